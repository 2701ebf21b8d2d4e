#!/usr/bin/python3
# Turns the descriptor set of proto/*.proto into lib/rpc's method table (C source).
#
# Usage: gen-registry.py DESCRIPTOR_SET OUTPUT.c      generate the table
#        gen-registry.py --list DESCRIPTOR_SET        print it as text
#
# The routing annotations (proto/lint.proto) are custom options. We read them
# from the raw option bytes instead of importing generated lint_pb2 code: the
# descriptor parser keeps extensions it does not know as unknown fields, and
# re-serializing the options gives them back verbatim. That way the generator
# depends on nothing but descriptor_pb2 and works with any protobuf runtime.
#
# Besides building the table the generator enforces the annotation rules the
# router relies on (docs/technical/rpc-registry.md); a violation fails the build.

import os
import sys

from google.protobuf import descriptor_pb2

# Extension numbers from proto/lint.proto. Upstream's:
EXT_INTERCEPTED = 82302  # ServiceOptions, bool
EXT_OP_TYPE = 82303  # MethodOptions, OperationMsg
EXT_STORAGE = 91233  # FieldOptions, bool
EXT_REPOSITORY = 91234
EXT_TARGET_REPOSITORY = 91235
EXT_ADDITIONAL_REPOSITORY = 91236
# Ours (75300-75399, docs/technical/rpc-registry.md):
EXT_ROUTER = 75300  # MethodOptions, RouterMsg
EXT_ROUTER_DROPS = 75301  # FieldOptions, bool

# RouterMsg fields, by number.
ROUTER_FIELDS = {1: 'creates_repository', 2: 'updates_existing', 3: 'not_voted',
                 4: 'primary_only'}

EXT_NAMES = {
    EXT_STORAGE: 'storage', EXT_REPOSITORY: 'repository',
    EXT_TARGET_REPOSITORY: 'target_repository',
    EXT_ADDITIONAL_REPOSITORY: 'additional_repository',
}

OPS = {0: 'UNKNOWN', 1: 'MUTATOR', 2: 'ACCESSOR', 3: 'MAINTENANCE'}
SCOPES = {0: 'REPOSITORY', 2: 'STORAGE'}

REPOSITORY_TYPE = '.gitaly.Repository'
# Packages whose services go into the table. Only gitaly services carry
# annotations; the others are answered by every server itself, so they are
# recorded as intercepted.
PACKAGES = ('gitaly', 'grpc.health.v1')
# Paths longer than this are refused; lib/rpc's RPC_PATH_MAX must agree.
PATH_MAX = 8

T_MESSAGE = descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE
T_STRING = descriptor_pb2.FieldDescriptorProto.TYPE_STRING
L_REPEATED = descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED

errors = []


def fail(msg):
    if msg not in errors:  # a message type walked twice reports once
        errors.append(msg)


# --- protobuf wire format, just enough to read option messages -----------

def read_varint(buf, pos):
    result = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError('truncated or overlong varint in options')
        b = buf[pos]
        pos += 1
        result |= (b & 0x7f) << shift
        shift += 7
        if not b & 0x80:
            return result, pos


def wire_fields(buf):
    """Yield (field number, wire type, value) for each field of buf."""
    pos = 0
    while pos < len(buf):
        key, pos = read_varint(buf, pos)
        num, wt = key >> 3, key & 7
        if wt == 0:
            val, pos = read_varint(buf, pos)
        elif wt == 1:
            val, pos = buf[pos:pos + 8], pos + 8
        elif wt == 2:
            n, pos = read_varint(buf, pos)
            val, pos = buf[pos:pos + n], pos + n
        elif wt == 5:
            val, pos = buf[pos:pos + 4], pos + 4
        else:
            raise ValueError('unexpected wire type %d in options' % wt)
        if pos > len(buf):
            raise ValueError('truncated options')
        yield num, wt, val


def option_bool(options, number):
    """None if the extension is absent, else its (last) value."""
    val = None
    for num, wt, v in wire_fields(options.SerializeToString()):
        if num == number and wt == 0:
            val = v != 0
    return val


def option_op_type(options):
    """(op, scope) of the op_type extension, or None if absent.

    Repeated occurrences of a message-typed option merge, as in protobuf."""
    found = False
    op = scope = 0
    for num, wt, v in wire_fields(options.SerializeToString()):
        if num != EXT_OP_TYPE or wt != 2:
            continue
        found = True
        for inner, iwt, iv in wire_fields(v):
            if inner == 1 and iwt == 0:
                op = iv
            elif inner == 2 and iwt == 0:
                scope = iv
    return (op, scope) if found else None


def option_router(options):
    """The RouterMsg extension as {name: bool} (merged), or None if absent."""
    found = None
    for num, wt, v in wire_fields(options.SerializeToString()):
        if num != EXT_ROUTER or wt != 2:
            continue
        found = found if found is not None else {}
        for inner, iwt, iv in wire_fields(v):
            if inner in ROUTER_FIELDS and iwt == 0:
                found[ROUTER_FIELDS[inner]] = iv != 0
    return found


# Wire type of a scalar field type (descriptor_pb2.FieldDescriptorProto.Type).
_FD = descriptor_pb2.FieldDescriptorProto
WIRE_OF = {
    _FD.TYPE_BOOL: 0, _FD.TYPE_ENUM: 0, _FD.TYPE_INT32: 0, _FD.TYPE_INT64: 0,
    _FD.TYPE_UINT32: 0, _FD.TYPE_UINT64: 0, _FD.TYPE_SINT32: 0, _FD.TYPE_SINT64: 0,
    _FD.TYPE_FIXED64: 1, _FD.TYPE_SFIXED64: 1, _FD.TYPE_DOUBLE: 1,
    _FD.TYPE_STRING: 2, _FD.TYPE_BYTES: 2,
    _FD.TYPE_FIXED32: 5, _FD.TYPE_SFIXED32: 5, _FD.TYPE_FLOAT: 5,
}


def find_drops(msgs, request, where):
    """(number, wire type) of the request's top-level fields marked router_drops.

    Only top-level, singular, scalar fields may carry the mark: the router
    filters the first message's top level and nothing below it."""
    drops = []

    def walk(type_name, depth, seen):
        msg = msgs.get(type_name)
        if msg is None or type_name in seen:
            return
        for f in msg.desc.field:
            fwhere = '%s: field %s.%s' % (where, type_name[1:], f.name)
            if field_mark(f, EXT_ROUTER_DROPS, fwhere):
                if depth:
                    fail('%s: router_drops is only allowed on top-level request fields' % fwhere)
                elif f.type == T_MESSAGE or f.label == L_REPEATED or f.type not in WIRE_OF:
                    fail('%s: router_drops needs a singular scalar field' % fwhere)
                else:
                    drops.append((f.number, WIRE_OF[f.type]))
            if f.type == T_MESSAGE:
                walk(f.type_name, depth + 1, seen | {type_name})

    walk(request, 0, set())
    return drops


EXT_NAMES[EXT_ROUTER_DROPS] = 'router_drops'


def field_mark(field, number, where):
    val = option_bool(field.options, number)
    if val is False:
        fail('%s: (gitaly.%s) is set to false; leave it out instead'
             % (where, EXT_NAMES[number]))
    return bool(val)


# --- descriptor index ------------------------------------------------------

class Message:
    def __init__(self, full_name, desc):
        self.full_name = full_name  # with leading dot
        self.desc = desc


def index_messages(fds):
    msgs = {}

    def add(prefix, desc):
        name = prefix + '.' + desc.name
        msgs[name] = Message(name, desc)
        for nested in desc.nested_type:
            add(name, nested)

    for f in fds.file:
        prefix = '.' + f.package if f.package else ''
        for m in f.message_type:
            add(prefix, m)
    return msgs


def oneof_siblings(desc, field):
    """Field numbers sharing field's (real) oneof: setting one clears the others."""
    if not field.HasField('oneof_index') or field.proto3_optional:
        return []
    return sorted(f.number for f in desc.field
                  if f is not field and f.HasField('oneof_index')
                  and f.oneof_index == field.oneof_index)


def has_marks(msgs, type_name, seen=None):
    """Whether any routing annotation is reachable from message type_name."""
    seen = seen if seen is not None else set()
    if type_name in seen or type_name not in msgs:
        return False
    seen.add(type_name)
    for f in msgs[type_name].desc.field:
        for ext in (EXT_STORAGE, EXT_TARGET_REPOSITORY, EXT_ADDITIONAL_REPOSITORY):
            if option_bool(f.options, ext):
                return True
        if f.type == T_MESSAGE and has_marks(msgs, f.type_name, seen):
            return True
    return False


class Step:
    def __init__(self, name, number, siblings):
        self.name = name
        self.number = number
        self.siblings = siblings


class Path:
    def __init__(self, steps, mark_len):
        self.steps = steps
        self.mark_len = mark_len  # steps up to and including the marked field

    def describe(self):
        return '.'.join('%s(%d)' % (s.name, s.number) for s in self.steps)


def find_paths(msgs, request, where):
    """All field paths from request to target, additional and storage fields.

    Mirrors the run-time rule: every message-typed field is walked, nested
    ones and oneof members included, and every annotated field found counts.
    """
    found = {'target': [], 'additional': [], 'storage': []}

    def walk(type_name, steps, stack):
        msg = msgs.get(type_name)
        if msg is None:
            fail('%s: unknown message type %s' % (where, type_name))
            return
        for f in msg.desc.field:
            fwhere = '%s: field %s.%s' % (where, type_name[1:], f.name)
            step = Step(f.name, f.number, oneof_siblings(msg.desc, f))
            here = steps + [step]
            is_repeated = f.label == L_REPEATED
            marks = [(kind, ext) for kind, ext in
                     (('target', EXT_TARGET_REPOSITORY),
                      ('additional', EXT_ADDITIONAL_REPOSITORY),
                      ('storage', EXT_STORAGE))
                     if field_mark(f, ext, fwhere)]
            if len(marks) > 1:
                fail('%s: carries more than one routing annotation' % fwhere)
            for kind, _ in marks:
                if is_repeated:
                    fail('%s: annotated field must not be repeated' % fwhere)
                    continue
                if kind == 'storage':
                    if f.type != T_STRING:
                        fail('%s: storage field must be a string' % fwhere)
                        continue
                    found[kind].append(Path(here, len(here)))
                    continue
                if f.type != T_MESSAGE:
                    fail('%s: %s repository field must be a message' % (fwhere, kind))
                    continue
                if f.type_name == REPOSITORY_TYPE:
                    found[kind].append(Path(here, len(here)))
                    continue
                # A wrapper (ObjectPool): its own Repository field marked
                # `repository` is where the repository really is.
                wrapper = msgs.get(f.type_name)
                inner = [g for g in (wrapper.desc.field if wrapper else [])
                         if field_mark(g, EXT_REPOSITORY, fwhere)]
                if len(inner) != 1 or inner[0].type_name != REPOSITORY_TYPE \
                        or inner[0].label == L_REPEATED:
                    fail('%s: type %s is neither gitaly.Repository nor a message '
                         'with exactly one singular gitaly.Repository field marked '
                         '(gitaly.repository)' % (fwhere, f.type_name[1:]))
                    continue
                g = inner[0]
                found[kind].append(Path(
                    here + [Step(g.name, g.number, oneof_siblings(wrapper.desc, g))],
                    len(here)))
            if f.type != T_MESSAGE:
                continue
            if f.type_name in stack:
                # Recursive type: fine unless annotations hide inside it,
                # since a finite table cannot describe infinitely many paths.
                if has_marks(msgs, f.type_name):
                    fail('%s: routing annotation inside recursive type %s'
                         % (fwhere, f.type_name[1:]))
                continue
            if is_repeated:
                # Each element would be a separate match; no request needs
                # that, so paths through repeated fields are refused.
                if has_marks(msgs, f.type_name):
                    fail('%s: routing annotation inside repeated field' % fwhere)
                continue
            walk(f.type_name, here, stack | {f.type_name})

    walk(request, [], {request})
    for kind in found:
        for p in found[kind]:
            if len(p.steps) > PATH_MAX:
                fail('%s: %s path %s is longer than %d fields'
                     % (where, kind, p.describe(), PATH_MAX))
    return found


# --- the table -----------------------------------------------------------

class Method:
    pass


def build_table(fds):
    msgs = index_messages(fds)
    table = []
    for f in fds.file:
        if f.package not in PACKAGES:
            continue
        for svc in f.service:
            service = f.package + '.' + svc.name
            intercepted = option_bool(svc.options, EXT_INTERCEPTED)
            if intercepted is False:
                fail('%s: service %s: intercepted is set to false; leave it out'
                     % (f.name, service))
            intercepted = bool(intercepted) or f.package != 'gitaly'
            for md in svc.method:
                m = Method()
                m.service = service
                m.method = md.name
                m.name = '/%s/%s' % (service, md.name)
                m.client_streaming = md.client_streaming
                m.server_streaming = md.server_streaming
                m.intercepted = intercepted
                m.request = md.input_type.lstrip('.')
                m.response = md.output_type.lstrip('.')
                where = '%s: method %s' % (f.name, m.name)
                op_type = option_op_type(md.options)
                m.op, m.scope = op_type if op_type else (0, 0)
                m.paths = find_paths(msgs, md.input_type, where)
                m.router = option_router(md.options)
                m.drops = find_drops(msgs, md.input_type, where)
                lint(m, op_type, where)
                lint_router(m, where)
                table.append(m)
    table.sort(key=lambda m: m.name.encode())
    for a, b in zip(table, table[1:]):
        if a.name == b.name:
            fail('method %s is defined twice' % a.name)
    return table


def lint(m, op_type, where):
    if m.intercepted:
        if op_type is not None:
            fail('%s: intercepted service methods must not have op_type' % where)
        return
    if op_type is None:
        fail('%s: missing op_type' % where)
        return
    if m.op not in OPS:
        fail('%s: invalid op %d' % (where, m.op))
        return
    if m.op == 0:
        fail('%s: op is UNKNOWN' % where)
    if m.scope not in SCOPES:
        fail('%s: unknown scope_level %d' % (where, m.scope))
        return
    if m.op == 3 and m.scope != 0:
        fail('%s: MAINTENANCE must be REPOSITORY scoped' % where)
    want_target, want_storage = (1, 0) if m.scope == 0 else (0, 1)
    for kind, want in (('target', want_target), ('storage', want_storage)):
        got = m.paths[kind]
        if len(got) != want:
            fail('%s: %s scope needs %d %s field(s), found %d%s'
                 % (where, SCOPES[m.scope], want, kind, len(got),
                    (': ' + ', '.join(p.describe() for p in got)) if got else ''))


def lint_router(m, where):
    """Where our router annotations may be used (docs/technical/rpc-registry.md)."""
    r = m.router
    if r is None:
        return
    if m.intercepted:
        fail('%s: intercepted service methods must not have (gitaly.router)' % where)
        return
    for name, val in sorted(r.items()):
        if val is False:
            fail('%s: (gitaly.router).%s is set to false; leave it out instead' % (where, name))
    if r.get('creates_repository') and (m.op != 1 or m.scope != 0):
        fail('%s: creates_repository needs a REPOSITORY scoped MUTATOR' % where)
    if r.get('updates_existing') and not r.get('creates_repository'):
        fail('%s: updates_existing needs creates_repository' % where)
    if r.get('not_voted') and (m.op != 1 or m.scope != 0):
        fail('%s: not_voted needs a REPOSITORY scoped MUTATOR' % where)
    if r.get('primary_only') and (m.op != 2 or m.scope != 0):
        fail('%s: primary_only needs a REPOSITORY scoped ACCESSOR' % where)


def c_string(s):
    return '"' + s.replace('\\', '\\\\').replace('"', '\\"') + '"'


def emit_c(table, out):
    w = out.write
    w('/* Generated by tools/gen-registry.py from the proto/ files: do not edit. */\n')
    w('#include "rpc/registry.h"\n\n')
    w('#include <stddef.h>\n\n')
    for i, m in enumerate(table):
        for kind in ('target', 'additional', 'storage'):
            for j, p in enumerate(m.paths[kind]):
                for k, s in enumerate(p.steps):
                    if s.siblings:
                        w('static const uint32_t oneof_%d_%s_%d_%d[] = { %s };\n'
                          % (i, kind, j, k, ', '.join(map(str, s.siblings))))
                w('static const struct rpc_step steps_%d_%s_%d[] = {\n' % (i, kind, j))
                for k, s in enumerate(p.steps):
                    sib = ('oneof_%d_%s_%d_%d' % (i, kind, j, k)) if s.siblings else 'NULL'
                    w('\t{ %d, %d, %s },\n' % (s.number, len(s.siblings), sib))
                w('};\n')
            if m.paths[kind]:
                w('static const struct rpc_path paths_%d_%s[] = {\n' % (i, kind))
                for j, p in enumerate(m.paths[kind]):
                    w('\t{ steps_%d_%s_%d, %d, %d, %s },\n'
                      % (i, kind, j, len(p.steps), p.mark_len, c_string(p.describe())))
                w('};\n')
        if m.drops:
            w('static const struct rpc_field drops_%d[] = { %s };\n'
              % (i, ', '.join('{ %d, %d }' % d for d in m.drops)))
    w('\nconst struct rpc_method rpc_methods[] = {\n')
    for i, m in enumerate(table):
        w('\t{\n')
        w('\t\t.name = %s,\n' % c_string(m.name))
        w('\t\t.name_len = %d,\n' % len(m.name.encode()))
        w('\t\t.service = %s,\n' % c_string(m.service))
        w('\t\t.method = %s,\n' % c_string(m.method))
        w('\t\t.request_type = %s,\n' % c_string(m.request))
        w('\t\t.response_type = %s,\n' % c_string(m.response))
        w('\t\t.op = RPC_OP_%s,\n' % OPS[m.op])
        w('\t\t.scope = RPC_SCOPE_%s,\n' % SCOPES.get(m.scope, 'REPOSITORY'))
        w('\t\t.client_streaming = %d,\n' % m.client_streaming)
        w('\t\t.server_streaming = %d,\n' % m.server_streaming)
        w('\t\t.intercepted = %d,\n' % m.intercepted)
        for kind in ('target', 'additional', 'storage'):
            n = len(m.paths[kind])
            w('\t\t.%s = { %s, %d },\n' % (kind, ('paths_%d_%s' % (i, kind)) if n else 'NULL', n))
        r = m.router or {}
        for name in ROUTER_FIELDS.values():
            if r.get(name):
                w('\t\t.%s = 1,\n' % name)
        if m.drops:
            w('\t\t.drops = drops_%d,\n\t\t.drops_nr = %d,\n' % (i, len(m.drops)))
        w('\t},\n')
    if not table:
        w('\t{ .name = NULL },\n')  # C forbids empty initialisers
    w('};\n\n')
    w('const size_t rpc_methods_nr = %d;\n' % len(table))


def emit_list(table, out):
    for m in table:
        kind = ('Bidi' if m.client_streaming and m.server_streaming else
                'CS' if m.client_streaming else 'SS' if m.server_streaming else 'U')
        cls = 'intercepted' if m.intercepted else '%s %s' % (OPS[m.op], SCOPES.get(m.scope, '?'))
        parts = ['%-60s %-4s %-22s' % (m.name, kind, cls)]
        for k in ('target', 'additional', 'storage'):
            if m.paths[k]:
                parts.append('%s=%s' % (k, ','.join(p.describe() for p in m.paths[k])))
        parts += sorted(k for k, v in (m.router or {}).items() if v)
        if m.drops:
            parts.append('drops=%s' % ','.join(str(d[0]) for d in m.drops))
        out.write(' '.join(parts) + '\n')


def main(argv):
    listing = len(argv) == 3 and argv[1] == '--list'
    if not listing and len(argv) != 3:
        sys.stderr.write('usage: gen-registry.py DESCRIPTOR_SET OUTPUT.c\n'
                         '       gen-registry.py --list DESCRIPTOR_SET\n')
        return 2
    desc_path = argv[2] if listing else argv[1]
    fds = descriptor_pb2.FileDescriptorSet()
    with open(desc_path, 'rb') as f:
        fds.ParseFromString(f.read())
    try:
        table = build_table(fds)
    except ValueError as e:
        fail(str(e))
    if errors:
        for e in errors:
            sys.stderr.write('gen-registry: error: %s\n' % e)
        sys.stderr.write('gen-registry: %d annotation error(s) in proto/*.proto; '
                         'see docs/technical/rpc-registry.md\n' % len(errors))
        return 1
    if listing:
        emit_list(table, sys.stdout)
        return 0
    tmp = argv[2] + '.tmp'
    with open(tmp, 'w') as out:
        emit_c(table, out)
    os.replace(tmp, argv[2])
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
