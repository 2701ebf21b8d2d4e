/*
 * How we hand a remote to git: configuration through GIT_CONFIG_* variables
 * (never argv), DNS pinning from resolved_address, and the redaction of
 * credentials from every message git's output reaches
 * (docs/technical/remotes.md, "Credentials" and "Resolved addresses").
 */
#include "repository/remote_config.h"
#include "base/util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "base/banned.h"

#define REDACTED "[FILTERED]"

void reposvc_remote_init(struct reposvc_remote *r)
{
	strvec_init(&r->keys);
	strvec_init(&r->values);
	strvec_init(&r->env);
	strvec_init(&r->secrets);
	strbuf_init(&r->url, 0);
	strbuf_init(&r->ssh, 0);
	strbuf_init(&r->ssh_dir, 0);
}

static const char *const ssh_files[] = { "ssh-key", "known-hosts" };

static void remove_ssh_dir(struct reposvc_remote *r)
{
	struct strbuf p = STRBUF_INIT;
	if (!r->ssh_dir.len)
		return;
	for (size_t i = 0; i < sizeof(ssh_files) / sizeof(*ssh_files); i++) {
		strbuf_reset(&p);
		strbuf_addf(&p, "%s/%s", r->ssh_dir.buf, ssh_files[i]);
		unlink(p.buf);
	}
	rmdir(r->ssh_dir.buf);
	strbuf_reset(&r->ssh_dir);
	strbuf_release(&p);
}

void reposvc_remote_release(struct reposvc_remote *r)
{
	strvec_clear(&r->keys);
	strvec_clear(&r->values);
	strvec_clear(&r->env);
	strvec_clear(&r->secrets);
	strbuf_release(&r->url);
	remove_ssh_dir(r);
	strbuf_release(&r->ssh);
	strbuf_release(&r->ssh_dir);
}

void reposvc_remote_config(struct reposvc_remote *r, const char *key, const char *value)
{
	strvec_push(&r->keys, key);
	strvec_push(&r->values, value);
}

const char *const *reposvc_remote_env(struct reposvc_remote *r)
{
	strvec_clear(&r->env);
	for (size_t i = 0; i < r->keys.nr; i++) {
		strvec_pushf(&r->env, "GIT_CONFIG_KEY_%zu=%s", i, r->keys.v[i]);
		strvec_pushf(&r->env, "GIT_CONFIG_VALUE_%zu=%s", i, r->values.v[i]);
	}
	if (r->keys.nr)
		strvec_pushf(&r->env, "GIT_CONFIG_COUNT=%zu", r->keys.nr);
	if (r->ssh.len)
		strvec_pushf(&r->env, "GIT_SSH_COMMAND=%s", r->ssh.buf);
	return r->env.v;
}

/* Write `content` as a new file `name` of the ssh directory, mode 0400; its path in `path`. */
static int write_private(struct reposvc_remote *r, const char *name, const char *content, struct strbuf *path,
			 struct strbuf *err)
{
	size_t len = strlen(content), off = 0;
	int fd;

	strbuf_reset(path);
	strbuf_addf(path, "%s/%s", r->ssh_dir.buf, name);
	fd = open(path->buf, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0400);
	if (fd < 0) {
		strbuf_addf(err, "create %s file: %s", !strcmp(name, "ssh-key") ? "ssh key" : "known hosts",
			    strerror(errno));
		return -1;
	}
	while (off < len) {
		ssize_t n = write(fd, content + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			strbuf_addf(err, "create %s file: %s", !strcmp(name, "ssh-key") ? "ssh key" : "known hosts",
				    strerror(n < 0 ? errno : EIO));
			close(fd);
			return -1;
		}
		off += (size_t)n;
	}
	if (close(fd) < 0) {
		strbuf_addf(err, "create %s file: %s", !strcmp(name, "ssh-key") ? "ssh key" : "known hosts",
			    strerror(errno));
		return -1;
	}
	return 0;
}

int reposvc_remote_ssh(struct reposvc_remote *r, const char *tmp_root, const char *key, const char *known_hosts,
		       struct strbuf *err)
{
	struct strbuf path = STRBUF_INIT;
	int rc = -1;

	strbuf_reset(&r->ssh);
	strbuf_addstr(&r->ssh, "ssh");
	if ((!key || !*key) && (!known_hosts || !*known_hosts))
		return 0;
	remove_ssh_dir(r);
	strbuf_addf(&r->ssh_dir, "%s/gitaly-ssh-invocation-XXXXXX", tmp_root);
	if (!mkdtemp(r->ssh_dir.buf)) {
		strbuf_addf(err, "create temporary directory: %s", strerror(errno));
		strbuf_reset(&r->ssh_dir);
		goto out;
	}
	if (key && *key) {
		if (write_private(r, ssh_files[0], key, &path, err) < 0)
			goto out;
		strbuf_addstr(&r->ssh, " -oIdentitiesOnly=yes -oIdentityFile=");
		strbuf_add_sh_quoted(&r->ssh, path.buf);
	}
	if (known_hosts && *known_hosts) {
		if (write_private(r, ssh_files[1], known_hosts, &path, err) < 0)
			goto out;
		strbuf_addstr(&r->ssh, " -oStrictHostKeyChecking=yes -oCheckHostIP=no -oUserKnownHostsFile=");
		strbuf_add_sh_quoted(&r->ssh, path.buf);
	}
	rc = 0;
out:
	if (rc < 0) {
		remove_ssh_dir(r);
		strbuf_reset(&r->ssh);
	}
	strbuf_release(&path);
	return rc;
}

static void percent_decode(struct strbuf *out, const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '%' && i + 2 < len && hex_digit(s[i + 1]) >= 0 && hex_digit(s[i + 2]) >= 0) {
			strbuf_addch(out, hex_digit(s[i + 1]) * 16 + hex_digit(s[i + 2]));
			i += 2;
		} else {
			strbuf_addch(out, s[i]);
		}
	}
}

static void add_secret(struct reposvc_remote *r, const char *s, size_t len)
{
	/* a decoded "%00" splits a secret: each non-empty piece is one (an empty one would match anything) */
	while (len) {
		const char *nul = memchr(s, '\0', len);
		size_t n = nul ? (size_t)(nul - s) : len;
		if (n) {
			struct strbuf sb = STRBUF_INIT;
			strbuf_add(&sb, s, n);
			strvec_push(&r->secrets, sb.buf);
			strbuf_release(&sb);
		}
		if (!nul)
			break;
		len -= n + 1;
		s = nul + 1;
	}
}

int reposvc_remote_userinfo(const char *url, struct strbuf *user, struct strbuf *pass, const char **host)
{
	const char *scheme_end = strstr(url, "://"), *auth, *at = NULL, *colon;
	size_t alen;
	if (!scheme_end)
		return 0;
	auth = scheme_end + 3;
	alen = strcspn(auth, "/?#");
	for (size_t i = 0; i < alen; i++)
		if (auth[i] == '@')
			at = auth + i;
	if (!at)
		return 0;
	colon = memchr(auth, ':', (size_t)(at - auth));
	if (colon) {
		percent_decode(user, auth, (size_t)(colon - auth));
		percent_decode(pass, colon + 1, (size_t)(at - colon - 1));
	} else {
		percent_decode(user, auth, (size_t)(at - auth));
	}
	if (host)
		*host = at + 1;
	return 1;
}

void reposvc_remote_secret_url(struct reposvc_remote *r, const char *url)
{
	struct strbuf user = STRBUF_INIT, pass = STRBUF_INIT;
	const char *host = NULL, *scheme_end = strstr(url, "://");
	if (reposvc_remote_userinfo(url, &user, &pass, &host)) {
		const char *auth = scheme_end + 3;
		const char *colon = memchr(auth, ':', (size_t)(host - 1 - auth));
		/* the raw userinfo first (longest), then its parts as written and decoded */
		add_secret(r, auth, (size_t)(host - 1 - auth));
		if (colon)
			add_secret(r, colon + 1, (size_t)(host - 1 - colon - 1));
		add_secret(r, pass.buf, pass.len);
		if (!colon)
			add_secret(r, user.buf, user.len);
	}
	strbuf_release(&user);
	strbuf_release(&pass);
}

void reposvc_remote_secret(struct reposvc_remote *r, const char *s)
{
	if (s)
		add_secret(r, s, strlen(s));
}

void reposvc_remote_redact(const struct reposvc_remote *r, struct strbuf *sb)
{
	/*
	 * One pass over the text as it was: at each position the longest
	 * secret starting there becomes the marker, so a replacement never
	 * joins the pieces of another secret and the text grows at most by
	 * one marker per character (replacing secret after secret could
	 * rescan the markers themselves and grow without bound).
	 */
	struct strbuf out = STRBUF_INIT;
	size_t pos = 0;
	int changed = 0;
	while (pos < sb->len) {
		size_t best = 0;
		for (size_t i = 0; i < r->secrets.nr; i++) {
			const char *s = r->secrets.v[i];
			size_t n;
			if (s[0] != sb->buf[pos])
				continue;
			n = strlen(s);
			if (n > best && n <= sb->len - pos && !memcmp(sb->buf + pos, s, n))
				best = n;
		}
		if (best) {
			strbuf_addstr(&out, REDACTED);
			pos += best;
			changed = 1;
		} else {
			strbuf_addch(&out, sb->buf[pos++]);
		}
	}
	if (changed) {
		strbuf_reset(sb);
		strbuf_add(sb, out.buf, out.len);
	}
	strbuf_release(&out);
}

/*
 * resolved_address: pin the URL's host to an address without touching DNS.
 * http(s) and git URLs keep their host and gain http.curloptResolve
 * "host:port:address"; ssh:// and scp-like URLs get the address in place of
 * the host.
 */
int reposvc_remote_resolve(struct reposvc_remote *r, const char *url, const char *ra, struct strbuf *err)
{
	unsigned char ip[16];
	struct strbuf u = STRBUF_INIT;
	int rc = 0;

	strbuf_addstr(&u, url);
	if (!ra || !*ra)
		goto out;
	if (inet_pton(AF_INET, ra, ip) != 1 && inet_pton(AF_INET6, ra, ip) != 1) {
		strbuf_addstr(err, "couldn't get curloptResolve config: resolved address has invalid IPv4/IPv6 address");
		rc = -1;
		goto out;
	}
	if (!strncmp(u.buf, "http://", 7) || !strncmp(u.buf, "https://", 8) || !strncmp(u.buf, "git://", 6)) {
		const char *host = strstr(u.buf, "://") + 3;
		size_t hl = strcspn(host, "/?#");
		const char *at = memchr(host, '@', hl);
		struct strbuf hp = STRBUF_INIT, kv = STRBUF_INIT;
		const char *port;
		if (at) {
			hl -= (size_t)(at + 1 - host);
			host = at + 1;
		}
		strbuf_add(&hp, host, hl);
		/* [v6]:port or host:port */
		port = hp.buf[0] == '[' ? strstr(hp.buf, "]:") : strrchr(hp.buf, ':');
		if (port && hp.buf[0] == '[')
			port++;
		if (port) {
			strbuf_addf(&kv, "%.*s:%s:%s", (int)(port - hp.buf), hp.buf, port + 1, ra);
		} else {
			const char *def = !strncmp(u.buf, "https", 5) ? "443" : !strncmp(u.buf, "git", 3) ? "9418" : "80";
			strbuf_addf(&kv, "%s:%s:%s", hp.buf, def, ra);
		}
		/* http.curloptResolve wants the bare host, without IPv6 brackets */
		if (kv.buf[0] == '[') {
			char *close = strchr(kv.buf, ']');
			if (close) {
				memmove(close, close + 1, strlen(close + 1) + 1);
				memmove(kv.buf, kv.buf + 1, strlen(kv.buf));
			}
		}
		reposvc_remote_config(r, "http.curloptResolve", kv.buf);
		strbuf_release(&hp);
		strbuf_release(&kv);
	} else if (!strncmp(u.buf, "ssh://", 6)) {
		const char *host = u.buf + 6;
		size_t hl = strcspn(host, "/?#");
		const char *at = memchr(host, '@', hl);
		const char *h = at ? at + 1 : host;
		size_t rest = hl - (size_t)(h - host);
		const char *colon = memchr(h, ':', rest);
		struct strbuf n = STRBUF_INIT;
		strbuf_add(&n, u.buf, (size_t)(h - u.buf));
		strbuf_addstr(&n, ra);
		if (colon)
			strbuf_add(&n, colon, rest - (size_t)(colon - h));
		strbuf_addstr(&n, h + rest);
		strbuf_reset(&u);
		strbuf_add(&u, n.buf, n.len);
		strbuf_release(&n);
	} else {
		const char *colon = strchr(u.buf, ':');
		const char *at = strchr(u.buf, '@');
		struct strbuf n = STRBUF_INIT;
		if (!colon || memchr(u.buf, '/', (size_t)(colon - u.buf))) {
			strbuf_addf(err, "couldn't get curloptResolve config: invalid protocol/URL encountered: %s", u.buf);
			rc = -1;
			goto out;
		}
		if (at && at < colon)
			strbuf_add(&n, u.buf, (size_t)(at - u.buf) + 1);
		strbuf_addf(&n, "%s%s", ra, colon);
		strbuf_reset(&u);
		strbuf_add(&u, n.buf, n.len);
		strbuf_release(&n);
	}
out:
	strbuf_reset(&r->url);
	strbuf_add(&r->url, u.buf, u.len);
	strbuf_release(&u);
	return rc;
}

int reposvc_remote_setup(struct reposvc_remote *r, const char *name, const char *url, const char *auth_header,
			 const char *resolved, struct strbuf *err)
{
	struct strbuf k = STRBUF_INIT, v = STRBUF_INIT;
	reposvc_remote_secret_url(r, url);
	if (auth_header && *auth_header)
		reposvc_remote_secret(r, auth_header);
	if (reposvc_remote_resolve(r, url, resolved, err) < 0) {
		reposvc_remote_redact(r, err);
		return -1;
	}
	if (name) {
		strbuf_addf(&k, "remote.%s.url", name);
		reposvc_remote_config(r, k.buf, r->url.buf);
	}
	if (auth_header && *auth_header) {
		/* scoped to the URL as given, as upstream does */
		strbuf_reset(&k);
		strbuf_addf(&k, "http.%s.extraHeader", url);
		strbuf_addf(&v, "Authorization: %s", auth_header);
		reposvc_remote_config(r, k.buf, v.buf);
	}
	strbuf_release(&k);
	strbuf_release(&v);
	return 0;
}
