/* The input and output of `configuration validate` (validate.h). */
#include "config/validate.h"
#include "config/reader.h"
#include "base/fs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cfg_validate_read(int fd, struct strbuf *in, struct strbuf *err)
{
	int n = fs_read_fd(fd, CFG_VALIDATE_MAX_INPUT, in);
	if (n >= 0)
		return 0;
	if (n == -EFBIG)
		strbuf_addf(err, "processing input data: more than %d bytes\n", CFG_VALIDATE_MAX_INPUT);
	else
		strbuf_addf(err, "processing input data: %s\n", strerror(-n));
	return -1;
}

void cfg_validate_add_parse_error(json_t *errors, const char *err)
{
	struct strbuf sb = STRBUF_INIT;
	json_t *e = json_object();
	cfg_error_line_column(err, &sb);
	json_object_set_new(e, "message", json_string(sb.buf));
	json_array_append_new(errors, e);
	strbuf_release(&sb);
}

void cfg_validate_print(json_t *errors)
{
	json_t *out = json_object();
	char *text;
	json_object_set(out, "errors", errors);
	text = json_dumps(out, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	printf("%s\n", text);
	free(text);
	json_decref(out);
}
