/* Running a config's `config_command` and merging its JSON output (see command.h). */
#include "config/command.h"
#include "toml_internal.h"
#include "base/util.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <unistd.h>

static void set_value(struct toml_value *v, json_t *j);

static struct toml_keyval *find_key(struct toml_table *t, const char *key, size_t len)
{
	struct toml_keyval *kv = toml__table_find(t, key, len);
	/* upstream matches JSON names to fields case-insensitively */
	for (size_t i = 0; !kv && i < t->nr; i++)
		if (t->kv[i].key_len == len && !strncasecmp(t->kv[i].key, key, len))
			kv = &t->kv[i];
	return kv;
}

static void merge_object(struct toml_table *t, json_t *obj)
{
	const char *key;
	json_t *val;
	json_object_foreach(obj, key, val) {
		size_t len = strlen(key);
		struct toml_keyval *kv;
		if (json_is_null(val))
			continue;
		kv = find_key(t, key, len);
		if (!kv)
			kv = toml__table_add(t, xstrdup(key), len, 0, 0);
		if (json_is_object(val) && kv->val.type == TOML_TABLE) {
			merge_object(kv->val.u.tab, val);
			continue;
		}
		if (json_is_array(val) && kv->val.type == TOML_ARRAY) {
			struct toml_array *a = kv->val.u.arr;
			size_t n = json_array_size(val);
			for (size_t i = 0; i < n; i++) {
				json_t *e = json_array_get(val, i);
				if (i < a->nr && json_is_object(e) && a->v[i].type == TOML_TABLE)
					merge_object(a->v[i].u.tab, e);
				else if (i < a->nr)
					set_value(&a->v[i], e);
				else
					set_value(toml__array_push(a), e);
			}
			while (a->nr > n)
				toml__value_release(&a->v[--a->nr]);
			continue;
		}
		set_value(&kv->val, val);
	}
}

/* Replace *v by the JSON value j. */
static void set_value(struct toml_value *v, json_t *j)
{
	toml__value_release(v);
	memset(v, 0, sizeof(*v));
	switch (json_typeof(j)) {
	case JSON_OBJECT:
		v->type = TOML_TABLE;
		v->u.tab = toml__table_new(1, TOML_TAB_HEADER);
		merge_object(v->u.tab, j);
		break;
	case JSON_ARRAY:
		v->type = TOML_ARRAY;
		v->u.arr = toml__array_new(1, TOML_ARR_STATIC);
		for (size_t i = 0; i < json_array_size(j); i++)
			set_value(toml__array_push(v->u.arr), json_array_get(j, i));
		break;
	case JSON_STRING:
		v->type = TOML_STRING;
		v->u.str.len = json_string_length(j);
		v->u.str.ptr = xmalloc(v->u.str.len + 1);
		memcpy(v->u.str.ptr, json_string_value(j), v->u.str.len + 1);
		break;
	case JSON_INTEGER:
		v->type = TOML_INTEGER;
		v->u.i = json_integer_value(j);
		break;
	case JSON_REAL:
		v->type = TOML_FLOAT;
		v->u.f = json_real_value(j);
		break;
	case JSON_TRUE:
	case JSON_FALSE:
		v->type = TOML_BOOL;
		v->u.b = json_is_true(j);
		break;
	case JSON_NULL:
		/* null inside an array: an empty string, the zero value of most fields */
		v->type = TOML_STRING;
		v->u.str.ptr = xstrdup("");
		break;
	}
}

int cfg_merge_json(struct toml_table *root, const char *text, size_t len, struct strbuf *err)
{
	json_error_t jerr;
	json_t *j = json_loadb(text, len, JSON_ALLOW_NUL, &jerr);
	if (!j) {
		strbuf_addf(err, "unmarshalling generated config: %s", jerr.text);
		return -1;
	}
	if (!json_is_object(j)) {
		strbuf_addstr(err, "unmarshalling generated config: the output is not a JSON object");
		json_decref(j);
		return -1;
	}
	merge_object(root, j);
	json_decref(j);
	return 0;
}

/* Go's %q of s[0..len): what upstream prints the command's stderr as. */
static void add_quoted(struct strbuf *sb, const char *s, size_t len)
{
	strbuf_addch(sb, '"');
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		switch (c) {
		case '"': strbuf_addstr(sb, "\\\""); break;
		case '\\': strbuf_addstr(sb, "\\\\"); break;
		case '\n': strbuf_addstr(sb, "\\n"); break;
		case '\t': strbuf_addstr(sb, "\\t"); break;
		case '\r': strbuf_addstr(sb, "\\r"); break;
		default:
			if (c < 0x20 || c == 0x7f)
				strbuf_addf(sb, "\\x%02x", c);
			else
				strbuf_addch(sb, (char)c);
		}
	}
	strbuf_addch(sb, '"');
}

/* An errno or signal text as Go spells it: lower case ("no such file or directory", "killed"). */
static void add_lower_first(struct strbuf *sb, const char *s)
{
	size_t at = sb->len;
	strbuf_addstr(sb, s);
	if (sb->len > at && sb->buf[at] >= 'A' && sb->buf[at] <= 'Z')
		sb->buf[at] = (char)(sb->buf[at] - 'A' + 'a');
}

/* Read both pipes to EOF, each capped; -1 when a cap is exceeded. */
static int drain(int out_fd, int err_fd, struct strbuf *out, struct strbuf *errout)
{
	struct pollfd p[2] = { { out_fd, POLLIN, 0 }, { err_fd, POLLIN, 0 } };
	struct strbuf *bufs[2] = { out, errout };
	int open_fds = 2, rc = 0;
	char buf[8192];

	while (open_fds) {
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		for (int i = 0; i < 2; i++) {
			ssize_t n;
			if (p[i].fd < 0 || !p[i].revents)
				continue;
			n = read(p[i].fd, buf, sizeof(buf));
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				p[i].fd = -1;
				open_fds--;
				continue;
			}
			if (bufs[i]->len + (size_t)n > CFG_COMMAND_MAX_OUTPUT)
				rc = -1;
			else
				strbuf_add(bufs[i], buf, (size_t)n);
		}
	}
	return rc;
}

static int run_command(const char *cmd, struct strbuf *out, struct strbuf *err)
{
	int po[2], pe[2], px[2], status, child_errno = 0, rc;
	struct strbuf errout = STRBUF_INIT;
	pid_t pid;
	ssize_t n;

	if (pipe(po) < 0 || pipe(pe) < 0 || pipe2(px, O_CLOEXEC) < 0) {
		strbuf_addf(err, "running config command: %s", strerror(errno));
		return -1;
	}
	pid = fork();
	if (pid < 0) {
		strbuf_addf(err, "running config command: fork: %s", strerror(errno));
		return -1;
	}
	if (pid == 0) {
		char *argv[] = { (char *)cmd, NULL };
		int devnull = open("/dev/null", O_RDONLY);
		if (devnull >= 0)
			dup2(devnull, 0);
		dup2(po[1], 1);
		dup2(pe[1], 2);
		signal(SIGPIPE, SIG_DFL);
		execvp(cmd, argv);
		child_errno = errno;
		if (write(px[1], &child_errno, sizeof(child_errno)) < 0)
			_exit(127);
		_exit(127);
	}
	close(po[1]);
	close(pe[1]);
	close(px[1]);
	rc = drain(po[0], pe[0], out, &errout);
	close(po[0]);
	close(pe[0]);
	n = read(px[0], &child_errno, sizeof(child_errno));
	close(px[0]);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (n == (ssize_t)sizeof(child_errno)) {
		if (!strchr(cmd, '/') && child_errno == ENOENT)
			strbuf_addf(err, "running config command: exec: \"%s\": executable file not found in $PATH", cmd);
		else {
			strbuf_addf(err, "running config command: fork/exec %s: ", cmd);
			add_lower_first(err, strerror(child_errno));
		}
		rc = -1;
	} else if (WIFEXITED(status) && WEXITSTATUS(status)) {
		strbuf_addf(err, "running config command: exit status %d, stderr: ", WEXITSTATUS(status));
		add_quoted(err, errout.buf, errout.len);
		rc = -1;
	} else if (WIFSIGNALED(status)) {
		strbuf_addstr(err, "running config command: signal: ");
		add_lower_first(err, strsignal(WTERMSIG(status)));
		strbuf_addstr(err, ", stderr: ");
		add_quoted(err, errout.buf, errout.len);
		rc = -1;
	} else if (rc < 0) {
		strbuf_addf(err, "running config command: more than %d bytes of output", CFG_COMMAND_MAX_OUTPUT);
		rc = -1;
	}
	strbuf_release(&errout);
	return rc;
}

int cfg_config_command(struct toml_table *root, struct strbuf *err)
{
	const char *cmd;
	struct strbuf out = STRBUF_INIT;
	int rc;

	if (toml_get_string(root, "config_command", &cmd, NULL) < 0 || !*cmd)
		return 0;
	rc = run_command(cmd, &out, err);
	if (!rc)
		rc = cfg_merge_json(root, out.buf, out.len, err);
	strbuf_release(&out);
	return rc;
}
