/*
 * Remotes given by URL (remote_config.c, docs/technical/remotes.md): git
 * configuration through the environment, DNS pinning, credential redaction.
 * Depends on lib/base only (fuzz/fuzz_remote_url.c builds it alone).
 */
#ifndef GITALY_REPOSITORY_REMOTE_CONFIG_H
#define GITALY_REPOSITORY_REMOTE_CONFIG_H

#include "base/strbuf.h"
#include "base/strvec.h"

/*
 * Configuration for one git command that talks to a remote: key/value pairs
 * handed to git as GIT_CONFIG_COUNT/KEY/VALUE variables (never argv, so
 * credentials stay out of process listings), the URL git is given after DNS
 * pinning, and the secrets (URL credentials, authorization header) that
 * reposvc_remote_redact() removes from any text before it reaches a log or a
 * client.
 */
struct reposvc_remote {
	struct strvec keys, values;
	struct strvec env;       /* built by reposvc_remote_env() */
	struct strvec secrets;
	struct strbuf url;       /* the URL for git (reposvc_remote_resolve()) */
	struct strbuf ssh;       /* GIT_SSH_COMMAND (reposvc_remote_ssh()); empty: not set */
	struct strbuf ssh_dir;   /* the private directory of its files, removed on release */
};
void reposvc_remote_init(struct reposvc_remote *r);
void reposvc_remote_release(struct reposvc_remote *r);
void reposvc_remote_config(struct reposvc_remote *r, const char *key, const char *value);
/* The environment entries for git (valid until the next call or the release). */
const char *const *reposvc_remote_env(struct reposvc_remote *r);
/* Remember `s`, or the credentials inside `url`, as secrets to redact. */
void reposvc_remote_secret(struct reposvc_remote *r, const char *s);
void reposvc_remote_secret_url(struct reposvc_remote *r, const char *url);
/* Replace every secret in `sb` with "[FILTERED]". */
void reposvc_remote_redact(const struct reposvc_remote *r, struct strbuf *sb);
/*
 * Percent-decoded user and password of a "scheme://user:pass@host" URL;
 * `*host` points after the '@'. 1 when the URL has credentials, else 0.
 */
int reposvc_remote_userinfo(const char *url, struct strbuf *user, struct strbuf *pass, const char **host);
/*
 * Pin `url` to `resolved` (empty: no pinning) into r->url, adding
 * http.curloptResolve as needed. 0, or -1 with upstream's "couldn't get
 * curloptResolve config: ..." in `err`.
 */
int reposvc_remote_resolve(struct reposvc_remote *r, const char *url, const char *resolved, struct strbuf *err);
/*
 * Upstream's in-memory remote: secrets noted, `url` pinned, then
 * remote.<name>.url (when `name` is set) and, with an authorization
 * header, http.<url>.extraHeader. 0, or -1 with `err` set.
 */
int reposvc_remote_setup(struct reposvc_remote *r, const char *name, const char *url, const char *auth_header,
			 const char *resolved, struct strbuf *err);
/*
 * Upstream's ssh invocation (remotes.md): GIT_SSH_COMMAND is "ssh", plus,
 * with a private key, -oIdentitiesOnly=yes -oIdentityFile=<file>, and with
 * known hosts, -oStrictHostKeyChecking=yes -oCheckHostIP=no
 * -oUserKnownHostsFile=<file>. The files (mode 0400) sit in a new mode 0700
 * directory under `tmp_root`, removed by reposvc_remote_release(). 0, or -1
 * with `err` set.
 */
int reposvc_remote_ssh(struct reposvc_remote *r, const char *tmp_root, const char *key, const char *known_hosts,
		       struct strbuf *err);

#endif
