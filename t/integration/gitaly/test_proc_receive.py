"""HookService/ProcReceiveHook against a node: git's proc-receive exchange (pkt-lines) relayed as gitaly-hooks
would, the version answered before the commands are sent, and upstream's errors for bad protocol input."""
import base64
import json
import queue

import grpc
import pytest

from gitaly_itest import pb
from helpers_hooks import payload
from helpers_reads import rpc_error

H = lambda: pb("hook")  # noqa: E731
OLD, NEW = "0" * 40, "1" * 40


def pkt(s):
    b = s.encode() if isinstance(s, str) else s
    return b"%04x" % (len(b) + 4) + b


def env(node, txid):
    p = payload(node, node.repo("x.git"))
    obj = json.loads(base64.b64decode(p.split("=", 1)[1]))
    if txid is not None:
        obj["transaction_id"] = txid
    return ["GITALY_HOOKS_PAYLOAD=" + base64.b64encode(json.dumps(obj).encode()).decode()]


def call(node, stdin_chunks, txid=7):
    reqs = [H().ProcReceiveHookRequest(repository=node.repo("x.git"), environment_variables=env(node, txid))]
    reqs += [H().ProcReceiveHookRequest(stdin=c) for c in stdin_chunks]
    return list(node.stub("HookService").ProcReceiveHook(iter(reqs), timeout=30))


def test_exchange_answers_version_then_reports_no_waiter(gitaly_node):
    q = queue.Queue()

    def requests():
        while True:
            r = q.get()
            if r is None:
                return
            yield r

    q.put(H().ProcReceiveHookRequest(repository=gitaly_node.repo("x.git"),
                                     environment_variables=env(gitaly_node, 42)))
    q.put(H().ProcReceiveHookRequest(stdin=pkt(b"version=1\0atomic push-options") + b"0000"))
    it = gitaly_node.stub("HookService").ProcReceiveHook(requests(), timeout=30)
    # the version comes back while the stream is still open, as git waits for it before sending commands
    first = next(it)
    assert first.stdout == pkt(b"version=1\0atomic") + b"0000"
    # commands in two pieces, split inside a pkt-line
    cmds = pkt("%s %s refs/heads/main" % (OLD, NEW)) + pkt("%s %s refs/for/main" % (NEW, OLD)) + b"0000"
    q.put(H().ProcReceiveHookRequest(stdin=cmds[:30]))
    q.put(H().ProcReceiveHookRequest(stdin=cmds[30:]))
    rest = list(it)
    q.put(None)
    assert [r.stdout for r in rest] == [b""]
    assert rest[-1].exit_status.value == 1
    assert rest[-1].stderr == b"transmitting handler: no waiters for id: 42"


def test_version_without_features_and_commands_ended_by_eof(gitaly_node):
    got = call(gitaly_node, [pkt(b"version=1\0") + b"0000" + pkt("%s %s refs/heads/a" % (OLD, NEW))])
    assert got[0].stdout == pkt(b"version=1\0") + b"0000"
    assert got[-1].exit_status.value == 1 and b"no waiters for id: 7" in got[-1].stderr


@pytest.mark.parametrize("chunks,txid,msg", [
    ([], None, "creating handler: no transaction found in payload"),
    ([], 7, "creating handler: expected version negotiation: %!w(<nil>)"),
    ([b"zzzz"], 7, 'creating handler: expected version negotiation: pktLineSplitter: decode length: '
                   'strconv.ParseInt: parsing "zzzz": invalid syntax'),
    ([b"ffff"], 7, "creating handler: expected version negotiation: pktLineSplitter: invalid length: 65535"),
    ([b"00"], 7, 'creating handler: expected version negotiation: pktLineSplitter: incomplete length prefix on "00"'),
    ([b"0010version"], 7, "creating handler: expected version negotiation: unexpected EOF"),
    ([b"0000"], 7, "creating handler: receiving header: flush packets do not have a payload"),
    ([pkt("version=2")], 7, "creating handler: unsupported version: version=2"),
    ([pkt(b"version=1\0"), pkt("x")], 7, "creating handler: expected pkt flush"),
    ([pkt(b"version=1\0")], 7, "creating handler: expected flush: %!w(<nil>)"),
    ([pkt(b"version=1\0") + b"0000" + pkt("a b")], 7,
     "creating handler: parse reference update: unknown ref update format: [a b]"),
    ([pkt(b"version=1\0") + b"0000" + b"0001"], 7,
     "creating handler: receiving reference update: packet length 4 does not match header length 1"),
])
def test_bad_protocol_input_is_internal_and_the_node_lives(gitaly_node, chunks, txid, msg):
    e = rpc_error(lambda: call(gitaly_node, chunks, txid))
    assert e.code() == grpc.StatusCode.INTERNAL
    assert e.details() == msg
    got = call(gitaly_node, [pkt(b"version=1\0") + b"0000", b"0000"])
    assert got[-1].exit_status.value == 1


def test_empty_stream_and_bad_payload(gitaly_node):
    e = rpc_error(lambda: list(gitaly_node.stub("HookService").ProcReceiveHook(iter([]), timeout=30)))
    assert e.code() == grpc.StatusCode.INTERNAL and e.details() == "receiving first request: EOF"
    req = H().ProcReceiveHookRequest(environment_variables=["GITALY_HOOKS_PAYLOAD=!!"])
    e = rpc_error(lambda: list(gitaly_node.stub("HookService").ProcReceiveHook(iter([req]), timeout=30)))
    assert e.code() == grpc.StatusCode.INTERNAL
    assert e.details().startswith("creating handler: extracting hooks payload: ")
