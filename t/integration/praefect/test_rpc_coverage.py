"""Which of upstream's RPCs are still UNIMPLEMENTED: every method of every service in proto/ (which
declares all of upstream's), called with an empty request where it is served: on praefect for the
services praefect answers itself (`intercepted`), on a node for the others (praefect would refuse
an empty request before routing it; it proxies what the node answers). The README's status section
lists them (between the markers below); this test keeps that list true."""
import os
import re
from concurrent.futures import ThreadPoolExecutor

import grpc

from gitaly_itest import ROOT, pb

# ours, not upstream's: not part of the list
OURS = {"grpc.health.v1.Health", "gitaly.PraefectAdminService"}
BEGIN, END = "<!-- unimplemented: begin -->", "<!-- unimplemented: end -->"


def all_methods():
    out = []
    for f in sorted(os.listdir(os.path.join(ROOT, "proto"))):
        if not f.endswith(".proto"):
            continue
        for svc in pb(f[:-len(".proto")]).DESCRIPTOR.services_by_name.values():
            if svc.full_name in OURS:
                continue
            intercepted = svc.GetOptions().Extensions[pb("lint").intercepted]
            for m in svc.methods:
                out.append(("/%s/%s" % (svc.full_name, m.name), m.client_streaming, m.server_streaming,
                            intercepted))
    return out


def answer(channels, path, client_streaming, server_streaming, intercepted):
    channel = channels[intercepted]
    ident = dict(request_serializer=lambda b: b, response_deserializer=lambda b: b)
    try:
        if client_streaming and server_streaming:
            list(channel.stream_stream(path, **ident)(iter([b""]), timeout=10))
        elif client_streaming:
            channel.stream_unary(path, **ident)(iter([b""]), timeout=10)
        elif server_streaming:
            list(channel.unary_stream(path, **ident)(b"", timeout=10))
        else:
            channel.unary_unary(path, **ident)(b"", timeout=10)
    except grpc.RpcError as e:
        return e.code()
    return grpc.StatusCode.OK


def readme_list():
    text = open(os.path.join(ROOT, "README.md")).read()
    block = text[text.index(BEGIN) + len(BEGIN):text.index(END)]
    return set(re.findall(r"`([A-Za-z]+Service/[A-Za-z]+|[A-Za-z]+/[A-Za-z]+)`", block))


def test_the_readme_lists_exactly_the_rpcs_praefect_answers_unimplemented(cluster):
    node = next(iter(cluster.nodes.values()))
    channels = {True: cluster.praefect.channel(), False: node.channel(secret=node.token)}
    methods = all_methods()
    assert len(methods) > 150
    with ThreadPoolExecutor(8) as ex:
        codes = list(ex.map(lambda m: answer(channels, *m), methods))
    unimplemented = {m[0].split(".", 1)[1] for m, code in zip(methods, codes)
                     if code == grpc.StatusCode.UNIMPLEMENTED}
    listed = readme_list()
    assert sorted(unimplemented - listed) == [], "answer UNIMPLEMENTED but not listed in README.md"
    assert sorted(listed - unimplemented) == [], "listed in README.md as UNIMPLEMENTED but implemented"
    # and every node is still up: no empty request crashed anything
    for node in cluster.nodes.values():
        assert node.proc.poll() is None
    assert cluster.praefect.proc.poll() is None
