/* Unit tests for lib/config/toml: the TOML 1.0 subset config files use, errors, lookups. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include "base/strbuf.h"
#include "config/toml.h"

/* --- helpers ------------------------------------------------------------ */

/*
 * A compact rendering of a tree so that a test states the whole expected
 * result in one line: tables {k=v,...}, arrays [v,...], strings "..." with
 * bytes outside printable ASCII as \xNN, date-times as @kind:text.
 */
static void render_value(const struct toml_value *v, struct strbuf *out);

static void render_table(const struct toml_table *t, struct strbuf *out)
{
	strbuf_addch(out, '{');
	for (size_t i = 0; i < t->nr; i++) {
		if (i)
			strbuf_addch(out, ',');
		strbuf_add(out, t->kv[i].key, t->kv[i].key_len);
		strbuf_addch(out, '=');
		render_value(&t->kv[i].val, out);
	}
	strbuf_addch(out, '}');
}

static void render_value(const struct toml_value *v, struct strbuf *out)
{
	static const char *const kinds[] = { "", "offset", "local", "date", "time" };
	switch (v->type) {
	case TOML_STRING:
		strbuf_addch(out, '"');
		for (size_t i = 0; i < v->u.str.len; i++) {
			unsigned char c = (unsigned char)v->u.str.ptr[i];
			if (c < 0x20 || c >= 0x7f || c == '\\')
				strbuf_addf(out, "\\x%02x", c);
			else
				strbuf_addch(out, c);
		}
		strbuf_addch(out, '"');
		break;
	case TOML_INTEGER:
		strbuf_addf(out, "%" PRId64, v->u.i);
		break;
	case TOML_FLOAT:
		if (isnan(v->u.f))
			strbuf_addstr(out, signbit(v->u.f) ? "-nan" : "nan");
		else
			strbuf_addf(out, "%.17g", v->u.f);
		strbuf_addch(out, 'f');
		break;
	case TOML_BOOL:
		strbuf_addstr(out, v->u.b ? "true" : "false");
		break;
	case TOML_DATETIME:
		strbuf_addf(out, "@%s:%s", kinds[v->datetime_kind], v->u.str.ptr);
		break;
	case TOML_ARRAY:
		strbuf_addch(out, '[');
		for (size_t i = 0; i < v->u.arr->nr; i++) {
			if (i)
				strbuf_addch(out, ',');
			render_value(&v->u.arr->v[i], out);
		}
		strbuf_addch(out, ']');
		break;
	case TOML_TABLE:
		render_table(v->u.tab, out);
		break;
	}
}

static struct toml_table *parse_ok_len(const char *src, size_t len)
{
	struct strbuf err = STRBUF_INIT;
	struct toml_table *t = NULL;
	int ret = toml_parse(src, len, "config.toml", &t, &err);
	if (ret)
		print_message("unexpected error: %s\n", err.buf);
	assert_int_equal(ret, 0);
	assert_non_null(t);
	assert_int_equal(err.len, 0);
	strbuf_release(&err);
	return t;
}

static struct toml_table *parse_ok(const char *src)
{
	return parse_ok_len(src, strlen(src));
}

/* Parse `src` and compare the rendered tree with `want`. */
static void check_tree_len(const char *src, size_t len, const char *want)
{
	struct strbuf out = STRBUF_INIT;
	struct toml_table *t = parse_ok_len(src, len);
	render_table(t, &out);
	if (strcmp(out.buf, want))
		print_message("source: %s\n", src);
	assert_string_equal(out.buf, want);
	strbuf_release(&out);
	toml_free(t);
}

static void check_tree(const char *src, const char *want)
{
	check_tree_len(src, strlen(src), want);
}

/* Parse `src` expecting failure with exactly the message `want`. */
static void check_error_len(const char *src, size_t len, const char *want)
{
	struct strbuf err = STRBUF_INIT;
	struct toml_table *t = (struct toml_table *)&err; /* must be reset to NULL */
	int ret = toml_parse(src, len, "config.toml", &t, &err);
	if (ret != -EINVAL || strcmp(err.buf, want))
		print_message("source: %.*s\n", (int)len, src);
	assert_int_equal(ret, -EINVAL);
	assert_null(t);
	assert_string_equal(err.buf, want);
	strbuf_release(&err);
}

static void check_error(const char *src, const char *want)
{
	check_error_len(src, strlen(src), want);
}

/* --- strings ------------------------------------------------------------ */

static void test_basic_strings(void **state)
{
	check_tree("a = \"plain\"\n"
		   "b = \"tab\\there \\\"quoted\\\" back\\\\slash\"\n"
		   "c = \"\\b\\f\\n\\r\"\n"
		   "d = \"caf\\u00e9 \\U0001F600 \\u0041\"\n"
		   "e = \"\"\n"
		   "f = \"literal\ttab and # not a comment\"\n",
		   "{a=\"plain\",b=\"tab\\x09here \"quoted\" back\\x5cslash\","
		   "c=\"\\x08\\x0c\\x0a\\x0d\",d=\"caf\\xc3\\xa9 \\xf0\\x9f\\x98\\x80 A\","
		   "e=\"\",f=\"literal\\x09tab and # not a comment\"}");
}

static void test_literal_strings(void **state)
{
	check_tree("winpath = 'C:\\Users\\nodejs\\templates'\n"
		   "quoted = 'Tom \"Dubs\" Preston-Werner'\n"
		   "regex = '<\\i\\c*\\s*>'\n"
		   "empty = ''\n",
		   "{winpath=\"C:\\x5cUsers\\x5cnodejs\\x5ctemplates\","
		   "quoted=\"Tom \"Dubs\" Preston-Werner\",regex=\"<\\x5ci\\x5cc*\\x5cs*>\",empty=\"\"}");
}

static void test_multiline_strings(void **state)
{
	/* The newline right after the opening quotes is dropped. */
	check_tree("a = \"\"\"\nRoses are red\nViolets are blue\"\"\"\n",
		   "{a=\"Roses are red\\x0aViolets are blue\"}");
	/* A line-ending backslash eats the newline and following blanks. */
	check_tree("a = \"\"\"\\\n  The quick brown \\\n\n\n    fox.\\\n   \"\"\"\n",
		   "{a=\"The quick brown fox.\"}");
	/* ...also with blanks between the backslash and the newline. */
	check_tree("a = \"\"\"one \\  \t\n  two\"\"\"\n", "{a=\"one two\"}");
	/* Escapes still work; CRLF becomes LF. */
	check_tree("a = \"\"\"x\\ty\r\nz\\u00e9\"\"\"\r\n", "{a=\"x\\x09y\\x0az\\xc3\\xa9\"}");
	/* One or two quotes right before the closing three belong to the string. */
	check_tree("a = \"\"\"Here are two quotes: \"\". Simple.\"\"\"\n"
		   "b = \"\"\"ends with one\"\"\"\"\n"
		   "c = \"\"\"ends with two\"\"\"\"\"\n",
		   "{a=\"Here are two quotes: \"\". Simple.\",b=\"ends with one\"\",c=\"ends with two\"\"\"}");
	/* Literal multi-line: no escapes at all. */
	check_tree("re = '''I [dw]on't need \\d{2} apples'''\n"
		   "lines = '''\nThe first newline is\ntrimmed in raw strings.\n   All other whitespace\n   is preserved.\n'''\n"
		   "q = ''''one quote''''\n",
		   "{re=\"I [dw]on't need \\x5cd{2} apples\","
		   "lines=\"The first newline is\\x0atrimmed in raw strings.\\x0a   All other whitespace\\x0a   is preserved.\\x0a\","
		   "q=\"'one quote'\"}");
}

static void test_string_with_nul(void **state)
{
	struct toml_table *t = parse_ok("a = \"x\\u0000y\"\nb = \"ok\"\n");
	const char *s = NULL;
	size_t len = 0;

	/* Without a length a NUL would silently truncate the value: refused. */
	assert_int_equal(toml_get_string(t, "a", &s, NULL), -EINVAL);
	assert_null(s);
	assert_int_equal(toml_get_string(t, "a", &s, &len), 0);
	assert_int_equal(len, 3);
	assert_memory_equal(s, "x\0y", 4);
	assert_int_equal(toml_get_string(t, "b", &s, NULL), 0);
	assert_string_equal(s, "ok");
	toml_free(t);
}

/* --- numbers, booleans, date-times -------------------------------------- */

static void test_integers(void **state)
{
	check_tree("a = 99\nb = +42\nc = 0\nd = -17\ne = 1_000_000\nf = 5_349_221\n"
		   "g = 0xDEADbeef\nh = 0xdead_beef\ni = 0o755\nj = 0b1101_0110\n"
		   "k = 9223372036854775807\nl = -9223372036854775808\nm = +0\nn = -0\n"
		   "o = 0x7fffffffffffffff\n",
		   "{a=99,b=42,c=0,d=-17,e=1000000,f=5349221,g=3735928559,h=3735928559,"
		   "i=493,j=214,k=9223372036854775807,l=-9223372036854775808,m=0,n=0,"
		   "o=9223372036854775807}");
}

static void test_floats(void **state)
{
	check_tree("a = +1.0\nb = 3.1415\nc = -0.01\nd = 5e+22\ne = 1e06\nf = -2E-2\n"
		   "g = 6.626e-34\nh = 224_617.445_991_228\ni = 0.0\nj = -0.0\n"
		   "k = inf\nl = +inf\nm = -inf\nn = nan\no = -nan\np = 1e1_0\n",
		   "{a=1f,b=3.1415000000000002f,c=-0.01f,d=4.9999999999999996e+22f,e=1000000f,"
		   "f=-0.02f,g=6.6259999999999998e-34f,h=224617.44599122801f,i=0f,j=-0f,"
		   "k=inff,l=inff,m=-inff,n=nanf,o=-nanf,p=10000000000f}");
}

static void test_booleans(void **state)
{
	check_tree("t = true\nf = false\n", "{t=true,f=false}");
}

static void test_datetimes(void **state)
{
	check_tree("odt1 = 1979-05-27T07:32:00Z\n"
		   "odt2 = 1979-05-27T00:32:00-07:00\n"
		   "odt3 = 1979-05-27T00:32:00.999999+05:30\n"
		   "odt4 = 1979-05-27 07:32:00z\n"
		   "ldt1 = 1979-05-27T07:32:00\n"
		   "ldt2 = 1979-05-27t00:32:00.5\n"
		   "ld = 1979-05-27 # a date and then a comment\n"
		   "lt1 = 07:32:00\n"
		   "lt2 = 00:32:00.999999\n"
		   "leap = 2000-02-29\n"
		   "in_array = [1979-05-27, 07:32:00]\n",
		   "{odt1=@offset:1979-05-27T07:32:00Z,odt2=@offset:1979-05-27T00:32:00-07:00,"
		   "odt3=@offset:1979-05-27T00:32:00.999999+05:30,odt4=@offset:1979-05-27 07:32:00z,"
		   "ldt1=@local:1979-05-27T07:32:00,ldt2=@local:1979-05-27t00:32:00.5,"
		   "ld=@date:1979-05-27,lt1=@time:07:32:00,lt2=@time:00:32:00.999999,"
		   "leap=@date:2000-02-29,in_array=[@date:1979-05-27,@time:07:32:00]}");

	struct toml_table *t = parse_ok("d = 1979-05-27T07:32:00Z\nn = 1\n");
	enum toml_datetime_kind kind = 0;
	const char *s = NULL;
	assert_int_equal(toml_get_datetime(t, "d", &s, &kind), 0);
	assert_string_equal(s, "1979-05-27T07:32:00Z");
	assert_int_equal(kind, TOML_OFFSET_DATETIME);
	assert_int_equal(toml_get_datetime(t, "n", &s, &kind), -EINVAL);
	assert_int_equal(toml_get_datetime(t, "x", &s, &kind), -ENOENT);
	toml_free(t);
}

/* --- arrays and inline tables ------------------------------------------- */

static void test_arrays(void **state)
{
	check_tree("integers = [ 1, 2, 3 ]\n"
		   "colors = [ \"red\", 'yellow', \"\"\"green\"\"\" ]\n"
		   "nested = [ [ 1, 2 ], [3, 4, 5], [] ]\n"
		   "mixed = [ 0.1, 1, \"x\", true, { a = 1 }, [2] ]\n"
		   "empty = []\n"
		   "multi = [\n  1, # one\n  2,\n\n  # a comment line\n  3, ]\n"
		   "trailing = [1,2,]\n",
		   "{integers=[1,2,3],colors=[\"red\",\"yellow\",\"green\"],"
		   "nested=[[1,2],[3,4,5],[]],mixed=[0.10000000000000001f,1,\"x\",true,{a=1},[2]],"
		   "empty=[],multi=[1,2,3],trailing=[1,2]}");
}

static void test_inline_tables(void **state)
{
	check_tree("name = { first = \"Tom\", last = \"Preston-Werner\" }\n"
		   "point = {x=1,y=2}\n"
		   "animal = { type.name = \"pug\", type.legs = 4 }\n"
		   "empty = {}\n"
		   "nested = { a = { b = { c = [ { d = 1 } ] } } }\n"
		   "ml = { list = [\n 1,\n 2 ] }\n",
		   "{name={first=\"Tom\",last=\"Preston-Werner\"},point={x=1,y=2},"
		   "animal={type={name=\"pug\",legs=4}},empty={},"
		   "nested={a={b={c=[{d=1}]}}},ml={list=[1,2]}}");
}

/* --- keys and tables ---------------------------------------------------- */

static void test_keys(void **state)
{
	check_tree("key = 1\nbare_key = 2\nbare-key = 3\n1234 = 4\n"
		   "\"127.0.0.1\" = 5\n\"character encoding\" = 6\n'key2' = 7\n"
		   "\"\" = 8\n\"\\u00e9\" = 9\n"
		   "site.\"google.com\" = true\n"
		   "fruit . color = \"yellow\"\nfruit.flavor = \"banana\"\n"
		   "3.14159 = \"pi\"\n",
		   "{key=1,bare_key=2,bare-key=3,1234=4,127.0.0.1=5,character encoding=6,"
		   "key2=7,=8,\xc3\xa9=9,site={google.com=true},"
		   "fruit={color=\"yellow\",flavor=\"banana\"},3={14159=\"pi\"}}");
}

static void test_tables(void **state)
{
	check_tree("top = 0\n"
		   "[table-1]\nkey1 = \"some string\"\nkey2 = 123\n"
		   "[ dog . \"tater.man\" ]\ntype.name = \"pug\"\n"
		   "[x.y.z.w] # implicit x, x.y, x.y.z\n"
		   "[x] # defining a super-table afterwards is fine\nq = 1\n"
		   "[fruit]\napple.color = \"red\"\napple.taste.sweet = true\n"
		   "[fruit.apple.texture] # sub-table of a dotted table\nsmooth = true\n"
		   "[empty]\n",
		   "{top=0,table-1={key1=\"some string\",key2=123},"
		   "dog={tater.man={type={name=\"pug\"}}},x={y={z={w={}}},q=1},"
		   "fruit={apple={color=\"red\",taste={sweet=true},texture={smooth=true}}},empty={}}");
}

static void test_arrays_of_tables(void **state)
{
	check_tree("[[products]]\nname = \"Hammer\"\nsku = 738594937\n"
		   "[[products]]  # empty table within the array\n"
		   "[[products]]\nname = \"Nail\"\ncolor = \"gray\"\n",
		   "{products=[{name=\"Hammer\",sku=738594937},{},{name=\"Nail\",color=\"gray\"}]}");

	/* [[a.b]] and [a.c] go into the latest [[a]]. */
	check_tree("[[virtual_storage]]\nname = \"default\"\n"
		   "[[virtual_storage.node]]\nstorage = \"gitaly-1\"\n"
		   "[[virtual_storage.node]]\nstorage = \"gitaly-2\"\n"
		   "[[virtual_storage]]\nname = \"other\"\n"
		   "[virtual_storage.extra]\nx = 1\n"
		   "[[virtual_storage.node]]\nstorage = \"gitaly-3\"\n",
		   "{virtual_storage=[{name=\"default\",node=[{storage=\"gitaly-1\"},{storage=\"gitaly-2\"}]},"
		   "{name=\"other\",extra={x=1},node=[{storage=\"gitaly-3\"}]}]}");

	/* [[a.b]] with no [[a]] makes `a` an implicit table, which [a] may define once. */
	check_tree("[[a.b]]\nx = 1\n[a]\ny = 2\n", "{a={b=[{x=1}],y=2}}");
}

static void test_whitespace_and_comments(void **state)
{
	/* Blank lines, indentation, CRLF, a byte order mark, comments everywhere. */
	check_tree("\xef\xbb\xbf# leading comment\r\n\r\n\t  a = 1   # trailing\r\n"
		   "  [ t ]  # header comment\r\n\tb=2\r\n#\r\n# last", "{a=1,t={b=2}}");
	check_tree("", "{}");
	check_tree("# only a comment", "{}");
	check_tree("\n\n\n", "{}");
}

static void test_document_order(void **state)
{
	struct toml_table *t = parse_ok("z = 1\n[m]\nb = 1\n[a]\nx = 1\n[m.c]\n[[k]]\n");
	static const char *const want[] = { "z", "m", "a", "k" };
	assert_int_equal(toml_table_len(t), 4);
	for (size_t i = 0; i < 4; i++) {
		struct toml_keyval *kv = toml_table_at(t, i);
		assert_string_equal(kv->key, want[i]);
		assert_true(kv->read);
	}
	assert_null(toml_table_at(t, 4));
	struct toml_table *m = NULL;
	assert_int_equal(toml_get_table(t, "m", &m), 0);
	assert_string_equal(m->kv[0].key, "b");
	assert_string_equal(m->kv[1].key, "c");
	toml_free(t);
}

static void test_positions(void **state)
{
	struct toml_table *t = parse_ok("# c\n  name = \"x\"\n[db]\n\tport = 5432\n"
					"[[node]]\n[[node]]\n  s = \"\xc3\xa9\"\n");
	struct toml_table *db = NULL;
	struct toml_array *nodes = NULL;
	/* Errors from later validation point at the key's line and column. */
	assert_int_equal(t->kv[0].line, 2);
	assert_int_equal(t->kv[0].col, 3);
	assert_int_equal(t->kv[0].val.line, 2);
	assert_int_equal(t->kv[0].val.col, 10);
	assert_int_equal(toml_get_table(t, "db", &db), 0);
	assert_int_equal(db->kv[0].line, 4);
	assert_int_equal(db->kv[0].col, 2);
	assert_int_equal(toml_get_tables(t, "node", &nodes), 0);
	assert_int_equal(nodes->v[0].line, 5);
	assert_int_equal(nodes->v[1].line, 6);
	toml_free(t);

	/* Columns count characters, not bytes: "é" is one column (bytes would say 12). */
	check_error("s = \"\xc3\xa9\xc3\xa9\" ; x = 1\n",
		    "config.toml:1:10: expected end of line after value, found ';'");
}

/* --- lookups ------------------------------------------------------------ */

static void test_typed_getters(void **state)
{
	struct toml_table *t = parse_ok("s = \"str\"\ni = 42\nf = 1.5\nb = true\n"
					"arr = [1, 2]\ntab = { k = 1 }\n"
					"buckets = [0.5, 1, 10]\nmixed = [{a = 1}, 2]\n"
					"[[aot]]\nx = 1\n[[aot]]\nx = 2\n");
	const char *s = "default";
	size_t len = 0;
	int64_t i = -1;
	double f = -1;
	bool b = false;
	struct toml_table *tab = NULL;
	struct toml_array *arr = NULL;

	/* Right type: 0. */
	assert_int_equal(toml_get_string(t, "s", &s, &len), 0);
	assert_string_equal(s, "str");
	assert_int_equal(len, 3);
	assert_int_equal(toml_get_int(t, "i", &i), 0);
	assert_int_equal(i, 42);
	assert_int_equal(toml_get_float(t, "f", &f), 0);
	assert_true(f == 1.5);
	assert_int_equal(toml_get_bool(t, "b", &b), 0);
	assert_true(b);
	assert_int_equal(toml_get_table(t, "tab", &tab), 0);
	assert_int_equal(toml_get_int(tab, "k", &i), 0);
	assert_int_equal(i, 1);
	assert_int_equal(toml_get_array(t, "arr", &arr), 0);
	assert_int_equal(toml_array_len(arr), 2);
	assert_int_equal(toml_value_int(toml_array_at(arr, 1), &i), 0);
	assert_int_equal(i, 2);
	assert_null(toml_array_at(arr, 2));
	assert_null(toml_array_table(arr, 0));

	/* Integers are accepted where a float is wanted. */
	assert_int_equal(toml_get_float(t, "i", &f), 0);
	assert_true(f == 42.0);
	assert_int_equal(toml_get_array(t, "buckets", &arr), 0);
	assert_int_equal(toml_value_float(&arr->v[2], &f), 0);
	assert_true(f == 10.0);

	/* Missing: -ENOENT, output untouched (so it can hold a default). */
	s = "default";
	i = 7;
	assert_int_equal(toml_get_string(t, "nope", &s, NULL), -ENOENT);
	assert_string_equal(s, "default");
	assert_int_equal(toml_get_int(t, "nope", &i), -ENOENT);
	assert_int_equal(i, 7);
	assert_int_equal(toml_get_float(t, "nope", &f), -ENOENT);
	assert_int_equal(toml_get_bool(t, "nope", &b), -ENOENT);
	assert_int_equal(toml_get_table(t, "nope", &tab), -ENOENT);
	assert_int_equal(toml_get_array(t, "nope", &arr), -ENOENT);
	assert_int_equal(toml_get_tables(t, "nope", &arr), -ENOENT);
	assert_null(toml_get(t, "nope"));
	assert_null(toml_get(NULL, "nope"));

	/* Wrong type: -EINVAL, output untouched. */
	assert_int_equal(toml_get_string(t, "i", &s, NULL), -EINVAL);
	assert_string_equal(s, "default");
	assert_int_equal(toml_get_int(t, "s", &i), -EINVAL);
	assert_int_equal(i, 7);
	assert_int_equal(toml_get_int(t, "f", &i), -EINVAL);
	assert_int_equal(toml_get_float(t, "s", &f), -EINVAL);
	assert_int_equal(toml_get_bool(t, "i", &b), -EINVAL);
	assert_int_equal(toml_get_table(t, "arr", &tab), -EINVAL);
	assert_int_equal(toml_get_array(t, "tab", &arr), -EINVAL);
	assert_int_equal(toml_get_tables(t, "arr", &arr), -EINVAL);
	assert_int_equal(toml_get_tables(t, "mixed", &arr), -EINVAL);

	/* Arrays of tables, [[aot]] or [{...}]. */
	assert_int_equal(toml_get_tables(t, "aot", &arr), 0);
	assert_int_equal(toml_array_len(arr), 2);
	assert_int_equal(toml_get_int(toml_array_table(arr, 1), "x", &i), 0);
	assert_int_equal(i, 2);
	assert_null(toml_array_table(arr, 2));

	/* Keys are exact: no dotted paths, no case folding. */
	assert_null(toml_get(t, "tab.k"));
	assert_null(toml_get(t, "S"));
	assert_non_null(toml_getn(t, "s_and_more", 1));

	assert_string_equal(toml_type_name(TOML_TABLE), "table");
	assert_string_equal(toml_type_name(TOML_DATETIME), "date-time");
	toml_free(t);
}

static void test_many_keys(void **state)
{
	/* Enough keys for the hash index; lookups and the duplicate check must agree. */
	struct strbuf src = STRBUF_INIT;
	struct toml_table *t;
	int64_t v;

	for (int i = 0; i < 3000; i++)
		strbuf_addf(&src, "key%d = %d\n", i, i);
	t = parse_ok(src.buf);
	assert_int_equal(toml_table_len(t), 3000);
	for (int i = 0; i < 3000; i++) {
		char key[16];
		snprintf(key, sizeof(key), "key%d", i);
		assert_int_equal(toml_get_int(t, key, &v), 0);
		assert_int_equal(v, i);
	}
	assert_int_equal(toml_get_int(t, "key3000", &v), -ENOENT);
	toml_free(t);

	strbuf_addstr(&src, "key2999 = 1\n");
	check_error(src.buf, "config.toml:3001:1: duplicate key \"key2999\"");
	strbuf_release(&src);
}

struct unread {
	struct strbuf sb;
};

static void collect_unread(const char *path, unsigned line, unsigned col, void *data)
{
	struct unread *u = data;
	strbuf_addf(&u->sb, "%s@%u:%u ", path, line, col);
}

static void test_unread_keys(void **state)
{
	struct toml_table *t = parse_ok("socket_path = \"/s\"\n"
					"listen_adr = \"typo\"\n"
					"[auth]\ntoken = \"t\"\ntransitoning = true\n"
					"[logging]\nlevel = \"info\"\n"
					"[[storage]]\nname = \"a\"\npath = \"/a\"\n"
					"[[storage]]\nname = \"b\"\npath = \"/b\"\nextra = 1\n"
					"[\"odd key\"]\nx = 1\n");
	struct unread u = { STRBUF_INIT };
	struct toml_table *auth = NULL;
	struct toml_array *storages = NULL;
	const char *s;

	assert_int_equal(toml_get_string(t, "socket_path", &s, NULL), 0);
	assert_int_equal(toml_get_table(t, "auth", &auth), 0);
	assert_int_equal(toml_get_string(auth, "token", &s, NULL), 0);
	assert_int_equal(toml_get_tables(t, "storage", &storages), 0);
	for (size_t i = 0; i < toml_array_len(storages); i++) {
		struct toml_table *st = toml_array_table(storages, i);
		assert_int_equal(toml_get_string(st, "name", &s, NULL), 0);
		assert_int_equal(toml_get_string(st, "path", &s, NULL), 0);
	}
	/* A key never looked at is listed once, its contents not separately. */
	toml_for_each_unread(t, collect_unread, &u);
	assert_string_equal(u.sb.buf, "listen_adr@2:1 auth.transitoning@5:1 logging@6:2 "
				      "storage[1].extra@14:1 'odd key'@15:2 ");
	strbuf_release(&u.sb);
	toml_free(t);
}

static void test_dump_json(void **state)
{
	struct toml_table *t = parse_ok("s = \"a\\\"b\\u0001\"\ni = -3\nf = 0.5\nb = false\n"
					"d = 1979-05-27\ninf = -inf\n[[t]]\nx = [1, \"y\"]\n");
	struct strbuf out = STRBUF_INIT;
	toml_dump_json(t, &out);
	assert_string_equal(out.buf,
		"{\"s\":{\"type\":\"string\",\"value\":\"a\\\"b\\u0001\"},"
		"\"i\":{\"type\":\"integer\",\"value\":\"-3\"},"
		"\"f\":{\"type\":\"float\",\"value\":\"0.5\"},"
		"\"b\":{\"type\":\"bool\",\"value\":\"false\"},"
		"\"d\":{\"type\":\"date-local\",\"value\":\"1979-05-27\"},"
		"\"inf\":{\"type\":\"float\",\"value\":\"-inf\"},"
		"\"t\":[{\"x\":[{\"type\":\"integer\",\"value\":\"1\"},{\"type\":\"string\",\"value\":\"y\"}]}]}");
	/* Dumping is not reading. */
	assert_false(t->kv[0].read);
	strbuf_release(&out);
	toml_free(t);
}

/* --- errors ------------------------------------------------------------- */

static void test_error_duplicate_keys(void **state)
{
	check_error("# gitaly\n"
		    "socket_path = \"/var/opt/gitlab/gitaly/gitaly.socket\"\n"
		    "bin_dir = \"/opt/gitlab/embedded/bin\"\n"
		    "\n\n\n\n\n\n\n\n"
		    "    socket_path = \"/tmp/other.socket\"\n",
		    "config.toml:12:5: duplicate key \"socket_path\"");
	check_error("[database]\nport = 5432\nport = 5433\n",
		    "config.toml:3:1: duplicate key \"database.port\"");
	check_error("a.b = 1\na.b = 2\n", "config.toml:2:3: duplicate key \"a.b\"");
	check_error("a = { b = 1, b = 2 }\n", "config.toml:1:14: duplicate key \"a.b\"");
	check_error("a = [ { b = 1 }, { c = 1, c = 2 } ]\n",
		    "config.toml:1:27: duplicate key \"a[1].c\"");
	check_error("[[vs]]\n[[vs]]\nname = 1\nname = 2\n",
		    "config.toml:4:1: duplicate key \"vs[1].name\"");
	/* Bare and quoted spellings are the same key. */
	check_error("spelling = 1\n\"spelling\" = 2\n",
		    "config.toml:2:1: duplicate key \"spelling\"");
	check_error("\"a b\" = 1\n'a b' = 2\n", "config.toml:2:1: duplicate key \"'a b'\"");
	/* A value then a table of the same name. */
	check_error("a = 1\n[a]\n", "config.toml:2:2: key \"a\" is not a table");
	check_error("[t]\nx = 1\n[t.x.y]\n", "config.toml:3:4: key \"t.x\" is not a table");
	check_error("a = 1\na.b = 2\n", "config.toml:2:1: key \"a\" is not a table");
	check_error("a = {}\na = 1\n", "config.toml:2:1: duplicate key \"a\"");
}

static void test_error_tables(void **state)
{
	check_error("[auth]\ntoken = \"a\"\n[logging]\n[auth]\n",
		    "config.toml:4:2: table \"auth\" already defined");
	check_error("[a.b]\n[a]\n[a.b]\n", "config.toml:3:4: table \"a.b\" already defined");
	check_error("[a]\n[a]\n", "config.toml:2:2: table \"a\" already defined");
	/* A table made by dotted keys cannot be reopened with a header... */
	check_error("[fruit]\napple.color = \"red\"\n[fruit.apple]\n",
		    "config.toml:3:8: table \"fruit.apple\" already defined");
	/* ...and a [table] cannot be extended with dotted keys. */
	check_error("[a.b.c]\nz = 9\n[a]\nb.c.t = 1\n",
		    "config.toml:4:3: table \"a.b.c\" already defined");
	/* Arrays of tables against tables and static arrays. */
	check_error("[[a]]\n[a]\n", "config.toml:2:2: table \"a\" already defined");
	check_error("[a]\n[[a]]\n", "config.toml:2:3: key \"a\" is not an array of tables");
	check_error("a = [1]\n[[a]]\n", "config.toml:2:3: cannot append to static array \"a\"");
	check_error("a = [{}]\n[a.b]\n", "config.toml:2:2: key \"a\" is not a table");
	check_error("[[vs]]\n[vs.node]\n[vs.node]\n",
		    "config.toml:3:5: table \"vs[0].node\" already defined");
	/* Inline tables are sealed. */
	check_error("a = { b = 1 }\na.c = 2\n", "config.toml:2:1: cannot add to inline table \"a\"");
	check_error("a = { b = 1 }\n[a]\n", "config.toml:2:2: table \"a\" already defined");
	check_error("a = { b = {} }\n[a.b.c]\n", "config.toml:2:2: cannot add to inline table \"a\"");
	check_error("a = { b = { c = 1 }, b.d = 2 }\n",
		    "config.toml:1:22: cannot add to inline table \"a.b\"");
	/* Header syntax. */
	check_error("[]\n", "config.toml:1:2: expected a key, found ']'");
	check_error("[a.]\n", "config.toml:1:4: expected a key, found ']'");
	check_error("[a\n", "config.toml:1:3: expected ']' to close table header, found end of line");
	check_error("[[a]\n", "config.toml:1:4: expected ']]' to close table header, found ']'");
	check_error("[ [a]]\n", "config.toml:1:3: expected a key, found '['");
	check_error("[a] b = 1\n", "config.toml:1:5: expected end of line after table header, found 'b'");
}

static void test_error_strings(void **state)
{
	check_error("a = \"bad \\x escape\"\n", "config.toml:1:10: invalid escape sequence \"\\x\"");
	check_error("a = \"\\e\"\n", "config.toml:1:6: invalid escape sequence \"\\e\"");
	check_error("a = \"tab\\\tx\"\n", "config.toml:1:9: invalid escape sequence");
	check_error("a = \"\\u12\"\n",
		    "config.toml:1:6: invalid unicode escape: \\u needs 4 hex digits");
	check_error("a = \"\\U0001F60\"\n",
		    "config.toml:1:6: invalid unicode escape: \\U needs 8 hex digits");
	check_error("a = \"\\uD800\"\n",
		    "config.toml:1:6: invalid unicode escape \"\\uD800\": not a Unicode scalar value");
	check_error("a = \"\\U00110000\"\n",
		    "config.toml:1:6: invalid unicode escape \"\\U00110000\": not a Unicode scalar value");
	check_error("a = \"\"\"x \\ y\"\"\"\n", "config.toml:1:10: invalid escape sequence");
	check_error("a = \"no end\n", "config.toml:1:5: unterminated string");
	check_error("a = \"no end", "config.toml:1:5: unterminated string");
	check_error("a = 'no end\nb = 1\n", "config.toml:1:5: unterminated string");
	check_error("\n\na = \"\"\"no\nend\"\"\n", "config.toml:3:5: unterminated multi-line string");
	check_error("a = '''no\nend''\n", "config.toml:1:5: unterminated multi-line string");
	check_error("a = \"\"\"x\"\"\"\"\"\"\n",
		    "config.toml:1:14: expected end of line after value, found '\"'");
	check_error("\"\"\"key\"\"\" = 1\n", "config.toml:1:1: a multi-line string cannot be a key");
}

static void test_error_encoding(void **state)
{
	/* Invalid UTF-8: a lone continuation byte, an overlong form, a surrogate, truncation. */
	check_error("a = 1\nb = \"x\x80\"\n", "config.toml:2:7: invalid UTF-8");
	check_error("# \xc0\xaf\n", "config.toml:1:3: invalid UTF-8");
	check_error("a = \"\xed\xa0\x80\"\n", "config.toml:1:6: invalid UTF-8");
	check_error("a = \"\xe2\x82", "config.toml:1:6: invalid UTF-8");
	/* Control characters: only tab is allowed in strings and comments. */
	check_error("a = \"x\x01\"\n", "config.toml:1:7: control character U+0001 in string");
	check_error("a = 'x\x7f'\n", "config.toml:1:7: control character U+007F in string");
	check_error("a = '''x\x1b'''\n", "config.toml:1:9: control character U+001B in string");
	check_error("a = 1 # bell \x07\n", "config.toml:1:14: control character U+0007 in comment");
	check_error_len("a = \"x\0\"\n", 9, "config.toml:1:7: control character U+0000 in string");
	check_error_len("a = 1\0\n", 7, "config.toml:1:6: expected end of line after value, found U+0000");
	/* A carriage return must start a CRLF. */
	check_error("a = 1\rb = 2\n",
		    "config.toml:1:6: expected end of line after value, found U+000D");
	check_error("a = \"x\ry\"\n",
		    "config.toml:1:7: carriage return not followed by newline in string");
	check_error("a = 1 # x\r\n# y\r",
		    "config.toml:2:4: carriage return not followed by newline in comment");
	check_error("\r", "config.toml:1:1: carriage return not followed by newline in document");
}

static void test_error_values(void **state)
{
	check_error("a = \n", "config.toml:1:5: missing value for key \"a\"");
	check_error("a =", "config.toml:1:4: missing value for key \"a\"");
	check_error("a = # no value\n", "config.toml:1:5: missing value for key \"a\"");
	check_error("a 1\n", "config.toml:1:3: expected '=' after key \"a\", found '1'");
	check_error("a.b\n", "config.toml:1:4: expected '=' after key \"a.b\", found end of line");
	check_error("= 1\n", "config.toml:1:1: expected a key, found '='");
	check_error("a = 1 2\n", "config.toml:1:7: expected end of line after value, found '2'");
	check_error("a = yes\n", "config.toml:1:5: invalid value \"yes\"");
	check_error("a = True\n", "config.toml:1:5: invalid value \"True\"");
	check_error("a = truex\n", "config.toml:1:5: invalid value \"truex\"");
	check_error("a = 1_\n", "config.toml:1:5: invalid number \"1_\"");
	check_error("a = 1__0\n", "config.toml:1:5: invalid number \"1__0\"");
	check_error("a = 012\n", "config.toml:1:5: invalid number \"012\"");
	check_error("a = -0x1\n", "config.toml:1:5: invalid number \"-0x1\"");
	check_error("a = 0X1\n", "config.toml:1:5: invalid number \"0X1\"");
	check_error("a = 0b102\n", "config.toml:1:5: invalid number \"0b102\"");
	check_error("a = 1.\n", "config.toml:1:5: invalid number \"1.\"");
	check_error("a = .5\n", "config.toml:1:5: invalid value \".5\"");
	check_error("a = 1e\n", "config.toml:1:5: invalid number \"1e\"");
	check_error("a = 1.2_e3\n", "config.toml:1:5: invalid number \"1.2_e3\"");
	check_error("a = Inf\n", "config.toml:1:5: invalid value \"Inf\"");
	check_error("a = 9223372036854775808\n",
		    "config.toml:1:5: integer \"9223372036854775808\" out of range");
	check_error("a = -9223372036854775809\n",
		    "config.toml:1:5: integer \"-9223372036854775809\" out of range");
	check_error("a = 0x8000000000000000\n",
		    "config.toml:1:5: integer \"0x8000000000000000\" out of range");
	check_error("a = 1111111111111111111111111111111111111111111111111111111111\n",
		    "config.toml:1:5: integer \"1111111111111111111111111111111111111111...\" out of range");
	check_error("a = 2001-02-29\n", "config.toml:1:5: invalid date-time \"2001-02-29\"");
	check_error("a = 1979-13-01\n", "config.toml:1:5: invalid date-time \"1979-13-01\"");
	check_error("a = 1979-05-27T24:00:00\n",
		    "config.toml:1:5: invalid date-time \"1979-05-27T24:00:00\"");
	check_error("a = 1979-05-27T07:32\n", "config.toml:1:5: invalid date-time \"1979-05-27T07:32\"");
	check_error("a = 07:32:00Z\n", "config.toml:1:5: invalid date-time \"07:32:00Z\"");
	check_error("a = 1979-05-27T07:32:00+7:00\n",
		    "config.toml:1:5: invalid date-time \"1979-05-27T07:32:00+7:00\"");
	check_error("a = 1:32:00\n", "config.toml:1:5: invalid date-time \"1:32:00\"");
	/* Arrays and inline tables. */
	check_error("a = [1 2]\n", "config.toml:1:8: expected ',' or ']' in array, found '2'");
	check_error("a = [1,,2]\n", "config.toml:1:8: expected a value, found ','");
	check_error("a = [,]\n", "config.toml:1:6: expected a value, found ','");
	check_error("a = [1,\n2\n", "config.toml:3:1: expected ',' or ']' in array, found end of file");
	check_error("a = { b = 1, }\n", "config.toml:1:14: trailing comma in inline table");
	check_error("a = { b = 1\n}\n",
		    "config.toml:1:12: expected ',' or '}' in inline table, found end of line");
	check_error("a = {\nb = 1 }\n", "config.toml:1:6: expected a key, found end of line");
	check_error("a = { b = 1 c = 2 }\n",
		    "config.toml:1:13: expected ',' or '}' in inline table, found 'c'");
	check_error("a = { b }\n", "config.toml:1:9: expected '=' after key \"a.b\", found '}'");
}

static void test_error_depth(void **state)
{
	struct strbuf src = STRBUF_INIT;
	struct toml_table *t;

	/* 128 levels are fine: in a = [[...]] the outer array is level 1. */
	strbuf_addstr(&src, "a = ");
	for (int i = 0; i < TOML_MAX_DEPTH; i++)
		strbuf_addch(&src, '[');
	for (int i = 0; i < TOML_MAX_DEPTH; i++)
		strbuf_addch(&src, ']');
	t = parse_ok(src.buf);
	toml_free(t);

	/* One more is not, and the parser must not recurse further. */
	strbuf_reset(&src);
	strbuf_addstr(&src, "a = ");
	for (int i = 0; i < 100000; i++)
		strbuf_addch(&src, '[');
	check_error(src.buf, "config.toml:1:133: nesting deeper than 128 levels");

	strbuf_reset(&src);
	strbuf_addstr(&src, "a = ");
	for (int i = 0; i < 100000; i++)
		strbuf_addstr(&src, "{b=");
	check_error(src.buf, "config.toml:1:389: nesting deeper than 128 levels");

	/* Dotted keys and headers count too: they build the same tree. */
	strbuf_reset(&src);
	for (int i = 0; i < TOML_MAX_DEPTH; i++)
		strbuf_addstr(&src, i ? ".k" : "k");
	strbuf_addstr(&src, " = 1\n");
	t = parse_ok(src.buf);
	toml_free(t);
	strbuf_reset(&src);
	for (int i = 0; i < TOML_MAX_DEPTH; i++)
		strbuf_addstr(&src, "k.");
	strbuf_addstr(&src, "k = 1\n");
	check_error(src.buf, "config.toml:1:257: key has more than 128 parts");
	strbuf_reset(&src);
	strbuf_addch(&src, '[');
	for (int i = 0; i < TOML_MAX_DEPTH; i++)
		strbuf_addstr(&src, "k.");
	strbuf_addstr(&src, "k]\n");
	check_error(src.buf, "config.toml:1:258: key has more than 128 parts");
	/* 127 header parts plus a three-part dotted key reach level 129... */
	strbuf_reset(&src);
	strbuf_addch(&src, '[');
	for (int i = 0; i < TOML_MAX_DEPTH - 1; i++)
		strbuf_addstr(&src, i ? ".k" : "k");
	strbuf_addstr(&src, "]\nx = 1\ny.z = 2\ny.z2.w = 3\n");
	check_error(src.buf, "config.toml:4:3: nesting deeper than 128 levels");
	/* ...as does [[k.k...k]] with 128 parts: the array and its element are a level each. */
	strbuf_reset(&src);
	strbuf_addstr(&src, "[[");
	for (int i = 0; i < TOML_MAX_DEPTH; i++)
		strbuf_addstr(&src, i ? ".k" : "k");
	strbuf_addstr(&src, "]]\n");
	check_error(src.buf, "config.toml:1:257: nesting deeper than 128 levels");
	/* ...and so do nested arrays of tables, two levels per [[...]]. */
	strbuf_reset(&src);
	for (int n = 1; n <= 65; n++) {
		strbuf_addstr(&src, "[[");
		for (int i = 0; i < n; i++)
			strbuf_addstr(&src, i ? ".k" : "k");
		strbuf_addstr(&src, "]]\n");
	}
	check_error(src.buf, "config.toml:65:131: nesting deeper than 128 levels");
	strbuf_release(&src);
}

/* --- files -------------------------------------------------------------- */

static void test_parse_file(void **state)
{
	char path[] = "/tmp/test_toml_XXXXXX";
	struct strbuf err = STRBUF_INIT, want = STRBUF_INIT;
	struct toml_table *t = NULL;
	int64_t v = 0;
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, "a = 1\nb = \n", 11), 11);
	close(fd);

	/* The error names the file as given. */
	assert_int_equal(toml_parse_file(path, 1024, &t, &err), -EINVAL);
	assert_null(t);
	strbuf_addf(&want, "%s:2:5: missing value for key \"b\"", path);
	assert_string_equal(err.buf, want.buf);
	strbuf_reset(&err);
	strbuf_reset(&want);

	fd = open(path, O_WRONLY | O_TRUNC);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "a = 1\n", 6), 6);
	close(fd);
	assert_int_equal(toml_parse_file(path, 6, &t, &err), 0);
	assert_int_equal(toml_get_int(t, "a", &v), 0);
	assert_int_equal(v, 1);
	toml_free(t);

	/* One byte over the cap. */
	assert_int_equal(toml_parse_file(path, 5, &t, &err), -EFBIG);
	assert_null(t);
	strbuf_addf(&want, "cannot read \"%s\": file is larger than 5 bytes", path);
	assert_string_equal(err.buf, want.buf);
	strbuf_reset(&err);
	strbuf_reset(&want);
	unlink(path);

	assert_int_equal(toml_parse_file(path, 1024, &t, &err), -ENOENT);
	strbuf_addf(&want, "cannot read \"%s\": No such file or directory", path);
	assert_string_equal(err.buf, want.buf);
	strbuf_reset(&err);
	assert_int_equal(toml_parse_file("/", 1024, &t, &err), -EISDIR);
	assert_string_equal(err.buf, "cannot read \"/\": Is a directory");
	strbuf_release(&err);
	strbuf_release(&want);

	/* No error buffer is fine too. */
	assert_int_equal(toml_parse("a = ", 4, "x.toml", &t, NULL), -EINVAL);
	assert_null(t);
	toml_free(NULL);
}

/* --- realistic configs -------------------------------------------------- */

/* A storage node config using upstream gitaly's keys (docs/config.gitaly.toml). */
static const char gitaly_config[] =
	"# Gitaly storage node\n"
	"socket_path = \"/var/opt/gitlab/gitaly/gitaly.socket\"\n"
	"listen_addr = \"0.0.0.0:8075\"\n"
	"tls_listen_addr = \"0.0.0.0:9999\"\n"
	"prometheus_listen_addr = \"localhost:9236\"\n"
	"bin_dir = \"/opt/gitlab/embedded/bin\"\n"
	"runtime_dir = \"/var/opt/gitlab/gitaly/run\"\n"
	"graceful_restart_timeout = \"1m\"\n"
	"\n"
	"[tls]\n"
	"certificate_path = \"/etc/gitlab/ssl/gitaly.crt\"\n"
	"key_path = \"/etc/gitlab/ssl/gitaly.key\"\n"
	"\n"
	"[[storage]]\n"
	"name = \"default\"\n"
	"path = \"/var/opt/gitlab/git-data/repositories\"\n"
	"\n"
	"[[storage]]\n"
	"name = \"gitaly-2\"\n"
	"path = \"/mnt/gitaly-2/repositories\"\n"
	"\n"
	"[auth]\n"
	"token = 'abc123secret'\n"
	"transitioning = false\n"
	"\n"
	"[git]\n"
	"bin_path = \"/opt/gitlab/embedded/bin/git\"\n"
	"use_bundled_binaries = true\n"
	"catfile_cache_size = 100\n"
	"\n"
	"[[git.config]]\n"
	"key = \"pack.threads\"\n"
	"value = \"4\"\n"
	"\n"
	"[[git.config]]\n"
	"key = \"receive.advertisePushOptions\"\n"
	"value = \"true\"\n"
	"\n"
	"[hooks]\n"
	"custom_hooks_dir = \"/var/opt/gitlab/gitaly/custom_hooks\"\n"
	"\n"
	"[gitlab]\n"
	"url = \"http+unix://%2Fvar%2Fopt%2Fgitlab%2Fgitlab-workhorse%2Fsockets%2Fsocket\"\n"
	"relative_url_root = \"/\"\n"
	"secret_file = \"/var/opt/gitlab/gitlab-shell/.gitlab_shell_secret\"\n"
	"\n"
	"[gitlab.http-settings]\n"
	"read_timeout = 300\n"
	"user = \"someone\"\n"
	"password = \"somepass\"\n"
	"ca_file = \"/etc/ssl/cert.pem\"\n"
	"\n"
	"[logging]\n"
	"dir = \"/var/log/gitlab/gitaly\"\n"
	"format = \"json\"\n"
	"level = \"warn\"\n"
	"\n"
	"[timeout]\n"
	"upload_pack_negotiation = \"10m\"\n"
	"upload_archive_negotiation = \"1m\"\n"
	"\n"
	"[pack_objects_cache]\n"
	"enabled = true\n"
	"dir = \"/var/opt/gitlab/git-data/repositories/+gitaly/PackObjectsCache\"\n"
	"max_age = \"5m\"\n"
	"min_occurrences = 1\n"
	"\n"
	"[[concurrency]]\n"
	"rpc = \"/gitaly.SmartHTTPService/PostUploadPackWithSidechannel\"\n"
	"max_per_repo = 20\n"
	"max_queue_wait = \"1s\"\n"
	"max_queue_size = 10\n"
	"\n"
	"[prometheus]\n"
	"grpc_latency_buckets = [0.001, 0.005, 0.025, 0.1, 0.5, 1.0, 10.0, 30.0, 60.0, 300.0, 1500.0]\n"
	"\n"
	"[daily_maintenance]\n"
	"start_hour = 4\n"
	"start_minute = 30\n"
	"duration = \"30m\"\n"
	"storages = [\"default\"]\n";

static void test_gitaly_config(void **state)
{
	struct toml_table *t = parse_ok(gitaly_config), *sub = NULL, *git = NULL;
	struct toml_array *storages = NULL, *gitcfg = NULL, *buckets = NULL;
	struct unread u = { STRBUF_INIT };
	const char *s = NULL;
	int64_t i = 0;
	bool b = true;
	double f = 0;

	assert_int_equal(toml_get_string(t, "socket_path", &s, NULL), 0);
	assert_string_equal(s, "/var/opt/gitlab/gitaly/gitaly.socket");
	assert_int_equal(toml_get_string(t, "listen_addr", &s, NULL), 0);
	assert_string_equal(s, "0.0.0.0:8075");
	assert_int_equal(toml_get_string(t, "bin_dir", &s, NULL), 0);
	assert_int_equal(toml_get_string(t, "graceful_restart_timeout", &s, NULL), 0);
	assert_string_equal(s, "1m");

	assert_int_equal(toml_get_tables(t, "storage", &storages), 0);
	assert_int_equal(toml_array_len(storages), 2);
	assert_int_equal(toml_get_string(toml_array_table(storages, 1), "name", &s, NULL), 0);
	assert_string_equal(s, "gitaly-2");
	assert_int_equal(toml_get_string(toml_array_table(storages, 1), "path", &s, NULL), 0);
	assert_string_equal(s, "/mnt/gitaly-2/repositories");

	assert_int_equal(toml_get_table(t, "auth", &sub), 0);
	assert_int_equal(toml_get_string(sub, "token", &s, NULL), 0);
	assert_string_equal(s, "abc123secret");
	assert_int_equal(toml_get_bool(sub, "transitioning", &b), 0);
	assert_false(b);

	assert_int_equal(toml_get_table(t, "git", &git), 0);
	assert_int_equal(toml_get_int(git, "catfile_cache_size", &i), 0);
	assert_int_equal(i, 100);
	assert_int_equal(toml_get_tables(git, "config", &gitcfg), 0);
	assert_int_equal(toml_array_len(gitcfg), 2);
	assert_int_equal(toml_get_string(toml_array_table(gitcfg, 1), "key", &s, NULL), 0);
	assert_string_equal(s, "receive.advertisePushOptions");

	assert_int_equal(toml_get_table(t, "gitlab", &sub), 0);
	assert_int_equal(toml_get_string(sub, "url", &s, NULL), 0);
	assert_int_equal(toml_get_table(sub, "http-settings", &sub), 0);
	assert_int_equal(toml_get_int(sub, "read_timeout", &i), 0);
	assert_int_equal(i, 300);

	assert_int_equal(toml_get_table(t, "logging", &sub), 0);
	assert_int_equal(toml_get_string(sub, "level", &s, NULL), 0);
	assert_string_equal(s, "warn");

	assert_int_equal(toml_get_table(t, "prometheus", &sub), 0);
	assert_int_equal(toml_get_array(sub, "grpc_latency_buckets", &buckets), 0);
	assert_int_equal(toml_array_len(buckets), 11);
	assert_int_equal(toml_value_float(toml_array_at(buckets, 10), &f), 0);
	assert_true(f == 1500.0);

	/* What a debug log of ignored keys would print for this partial reader. */
	toml_for_each_unread(t, collect_unread, &u);
	assert_string_equal(u.sb.buf,
		"tls_listen_addr@4:1 prometheus_listen_addr@5:1 runtime_dir@7:1 tls@10:2 "
		"storage[0].name@15:1 storage[0].path@16:1 "
		"git.bin_path@27:1 git.use_bundled_binaries@28:1 git.config[0].key@32:1 "
		"git.config[0].value@33:1 git.config[1].value@37:1 "
		"hooks@39:2 gitlab.relative_url_root@44:1 gitlab.secret_file@45:1 "
		"gitlab.http-settings.user@49:1 gitlab.http-settings.password@50:1 "
		"gitlab.http-settings.ca_file@51:1 logging.dir@54:1 logging.format@55:1 "
		"timeout@58:2 pack_objects_cache@62:2 concurrency@68:3 daily_maintenance@77:2 ");
	strbuf_release(&u.sb);
	toml_free(t);
}

/* The minimal router config of upstream's set-up guide. */
static const char praefect_minimal[] =
	"listen_addr = \"127.0.0.1:2305\"\n"
	"prometheus_listen_addr = \"127.0.0.1:10101\"\n"
	"[auth]\n"
	"token = \"secret\"\n"
	"[database]\n"
	"host = \"127.0.0.1\"\n"
	"port = 5432\n"
	"user = \"praefect\"\n"
	"password = \"pw\"\n"
	"dbname = \"praefect_production\"\n"
	"sslmode = \"disable\"\n"
	"[[virtual_storage]]\n"
	"name = \"default\"\n"
	"[[virtual_storage.node]]\n"
	"storage = \"gitaly-1\"\n"
	"address = \"tcp://10.0.0.1:8075\"\n"
	"token = \"gitaly-secret\"\n";

/* A fuller router config using upstream praefect's keys (docs/config.praefect.toml). */
static const char praefect_full[] =
	"listen_addr = \"0.0.0.0:2305\"\n"
	"socket_path = \"/var/opt/gitlab/praefect/praefect.socket\"\n"
	"prometheus_listen_addr = \"0.0.0.0:9652\"\n"
	"graceful_stop_timeout = \"1m\"\n"
	"\n"
	"[auth]\n"
	"token = \"PRAEFECT_EXTERNAL_TOKEN\"\n"
	"transitioning = false\n"
	"\n"
	"[logging]\n"
	"format = \"json\"\n"
	"level = \"info\"\n"
	"\n"
	"[prometheus]\n"
	"scrape_timeout = \"10s\"\n"
	"grpc_latency_buckets = [0.001, 0.005, 0.025, 0.1, 0.5, 1, 10, 30, 60, 300, 1500]\n"
	"\n"
	"[failover]\n"
	"enabled = true\n"
	"election_strategy = \"per_repository\"\n"
	"read_only_after_failover = true  # legacy, ignored\n"
	"\n"
	"[database]\n"
	"host = \"pgbouncer.internal\"\n"
	"port = 6432\n"
	"user = \"praefect\"\n"
	"password = \"PRAEFECT_SQL_PASSWORD\"\n"
	"dbname = \"praefect_production\"\n"
	"sslmode = \"require\"\n"
	"\n"
	"[database.session_pooled]\n"
	"host = \"postgres.internal\"\n"
	"port = 5432\n"
	"\n"
	"[replication]\n"
	"batch_size = 10\n"
	"parallel_storage_processing_workers = 1\n"
	"\n"
	"[reconciliation]\n"
	"scheduling_interval = \"5m\"\n"
	"histogram_buckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]\n"
	"\n"
	"[background_verification]\n"
	"verification_interval = \"168h\"\n"
	"delete_invalid_records = true\n"
	"\n"
	"[[virtual_storage]]\n"
	"name = \"default\"\n"
	"default_replication_factor = 2\n"
	"\n"
	"[[virtual_storage.node]]\n"
	"storage = \"gitaly-1\"\n"
	"address = \"tcp://gitaly-1.internal:8075\"\n"
	"token = \"PRAEFECT_INTERNAL_TOKEN\"\n"
	"\n"
	"[[virtual_storage.node]]\n"
	"storage = \"gitaly-2\"\n"
	"address = \"tls://gitaly-2.internal:9999\"\n"
	"token = \"PRAEFECT_INTERNAL_TOKEN\"\n"
	"\n"
	"[[virtual_storage.node]]\n"
	"storage = \"gitaly-3\"\n"
	"address = \"unix:/var/opt/gitlab/gitaly/gitaly.socket\"\n"
	"token = \"PRAEFECT_INTERNAL_TOKEN\"\n"
	"\n"
	"[[virtual_storage]]\n"
	"name = \"storage-1\"\n"
	"\n"
	"[[virtual_storage.node]]\n"
	"storage = \"gitaly-4\"\n"
	"address = \"dns:///gitaly-4.internal:8075\"\n";

static void test_praefect_config(void **state)
{
	struct toml_table *t = parse_ok(praefect_minimal), *sub = NULL, *vs = NULL;
	struct toml_array *vss = NULL, *nodes = NULL, *buckets = NULL;
	struct unread u = { STRBUF_INIT };
	const char *s = NULL;
	int64_t i = 0;
	double f = 0;

	assert_int_equal(toml_get_table(t, "database", &sub), 0);
	assert_int_equal(toml_get_int(sub, "port", &i), 0);
	assert_int_equal(i, 5432);
	assert_int_equal(toml_get_tables(t, "virtual_storage", &vss), 0);
	assert_int_equal(toml_array_len(vss), 1);
	vs = toml_array_table(vss, 0);
	assert_int_equal(toml_get_tables(vs, "node", &nodes), 0);
	assert_int_equal(toml_get_string(toml_array_table(nodes, 0), "address", &s, NULL), 0);
	assert_string_equal(s, "tcp://10.0.0.1:8075");
	toml_free(t);

	t = parse_ok(praefect_full);
	assert_int_equal(toml_get_string(t, "socket_path", &s, NULL), 0);
	assert_int_equal(toml_get_table(t, "prometheus", &sub), 0);
	assert_int_equal(toml_get_array(sub, "grpc_latency_buckets", &buckets), 0);
	/* Integers in a float list read as floats. */
	for (size_t k = 0; k < toml_array_len(buckets); k++)
		assert_int_equal(toml_value_float(toml_array_at(buckets, k), &f), 0);
	assert_true(f == 1500.0);
	assert_int_equal(toml_get_table(t, "database", &sub), 0);
	assert_int_equal(toml_get_table(sub, "session_pooled", &sub), 0);
	assert_int_equal(toml_get_string(sub, "host", &s, NULL), 0);
	assert_string_equal(s, "postgres.internal");

	/* Each [[virtual_storage.node]] lands in the latest [[virtual_storage]]. */
	assert_int_equal(toml_get_tables(t, "virtual_storage", &vss), 0);
	assert_int_equal(toml_array_len(vss), 2);
	vs = toml_array_table(vss, 0);
	assert_int_equal(toml_get_string(vs, "name", &s, NULL), 0);
	assert_string_equal(s, "default");
	assert_int_equal(toml_get_int(vs, "default_replication_factor", &i), 0);
	assert_int_equal(i, 2);
	assert_int_equal(toml_get_tables(vs, "node", &nodes), 0);
	assert_int_equal(toml_array_len(nodes), 3);
	assert_int_equal(toml_get_string(toml_array_table(nodes, 2), "address", &s, NULL), 0);
	assert_string_equal(s, "unix:/var/opt/gitlab/gitaly/gitaly.socket");
	assert_int_equal(nodes->v[2].line, 61);
	vs = toml_array_table(vss, 1);
	assert_int_equal(toml_get_tables(vs, "node", &nodes), 0);
	assert_int_equal(toml_array_len(nodes), 1);
	assert_int_equal(toml_get_string(toml_array_table(nodes, 0), "storage", &s, NULL), 0);
	assert_string_equal(s, "gitaly-4");
	/* A node without a token: absent, not empty. */
	assert_int_equal(toml_get_string(toml_array_table(nodes, 0), "token", &s, NULL), -ENOENT);

	toml_for_each_unread(t, collect_unread, &u);
	assert_non_null(strstr(u.sb.buf, "failover@18:2 "));
	assert_non_null(strstr(u.sb.buf, "virtual_storage[0].node[0].token@54:1 "));
	assert_null(strstr(u.sb.buf, "virtual_storage[0].name"));
	strbuf_release(&u.sb);
	toml_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_basic_strings),
		cmocka_unit_test(test_literal_strings),
		cmocka_unit_test(test_multiline_strings),
		cmocka_unit_test(test_string_with_nul),
		cmocka_unit_test(test_integers),
		cmocka_unit_test(test_floats),
		cmocka_unit_test(test_booleans),
		cmocka_unit_test(test_datetimes),
		cmocka_unit_test(test_arrays),
		cmocka_unit_test(test_inline_tables),
		cmocka_unit_test(test_keys),
		cmocka_unit_test(test_tables),
		cmocka_unit_test(test_arrays_of_tables),
		cmocka_unit_test(test_whitespace_and_comments),
		cmocka_unit_test(test_document_order),
		cmocka_unit_test(test_positions),
		cmocka_unit_test(test_typed_getters),
		cmocka_unit_test(test_many_keys),
		cmocka_unit_test(test_unread_keys),
		cmocka_unit_test(test_dump_json),
		cmocka_unit_test(test_error_duplicate_keys),
		cmocka_unit_test(test_error_tables),
		cmocka_unit_test(test_error_strings),
		cmocka_unit_test(test_error_encoding),
		cmocka_unit_test(test_error_values),
		cmocka_unit_test(test_error_depth),
		cmocka_unit_test(test_parse_file),
		cmocka_unit_test(test_gitaly_config),
		cmocka_unit_test(test_praefect_config),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
