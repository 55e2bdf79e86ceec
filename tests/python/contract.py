"""A raftq client written from proto/raftq.proto and docs/protocol.md alone: no Rust, no
generated service stubs (plain gRPC method paths), only the message classes protoc makes.

usage: /usr/bin/python3 contract.py GENERATED_DIR TOKEN CA_FILE ADDR [ADDR ...]
(TLS, trusting the cluster CA in CA_FILE, as every raftq node serves by default)
Prints "ok" and exits 0 when every promise it checks holds; raises otherwise.
"""
import sys
import uuid

sys.path.insert(0, sys.argv[1])
import grpc  # noqa: E402
import raftq_pb2 as pb  # noqa: E402
import google_rpc_pb2 as rpc  # noqa: E402

TOKEN, CA_FILE, ADDRS = sys.argv[2], sys.argv[3], sys.argv[4:]
AUTH = [("authorization", "Bearer " + TOKEN)]
with open(CA_FILE, "rb") as f:
    CREDENTIALS = grpc.ssl_channel_credentials(root_certificates=f.read())


def call(addr, method, request, response_type, metadata=AUTH):
    with grpc.secure_channel(addr, CREDENTIALS) as ch:
        stub = ch.unary_unary(
            "/raftq.v1.Queue/" + method,
            request_serializer=request.__class__.SerializeToString,
            response_deserializer=response_type.FromString,
        )
        return stub(request, metadata=metadata, timeout=10)


def details(err):
    """The google.rpc.Status of a refusal, from the grpc-status-details-bin trailer."""
    for key, value in err.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            return rpc.Status.FromString(value)
    raise AssertionError("no grpc-status-details-bin in %r" % (err,))


def refused(addr, method, request, response_type, metadata=AUTH):
    try:
        call(addr, method, request, response_type, metadata)
    except grpc.RpcError as e:
        return e
    raise AssertionError("%s was not refused" % method)


# 1. an Add through each node (followers forward); one request id, sent twice to different
#    nodes, has one effect and the same answer
rid = uuid.uuid4().bytes
add = pb.AddRequest(request_id=rid, jobs=[pb.JobSpec(cmd="echo py %d" % i, rep_grp="py")
                                          for i in range(3)])
first = call(ADDRS[0], "Add", add, pb.AddResponse)
again = call(ADDRS[-1], "Add", add, pb.AddResponse)
assert (first.added, first.existed) == (3, 0), first
assert again == first, (again, first)
stats = call(ADDRS[1 % len(ADDRS)], "Stats", pb.StatsRequest(), pb.StatsResponse)
assert stats.rep_groups["py"].counts["ready"] == 3, stats

# 2. a bad job: INVALID_ARGUMENT, nothing added, the standard details name the field
bad = pb.AddRequest(request_id=uuid.uuid4().bytes,
                    jobs=[pb.JobSpec(cmd="echo fine", rep_grp="py"), pb.JobSpec(cmd="", rep_grp="py")])
e = refused(ADDRS[0], "Add", bad, pb.AddResponse)
assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e
st = details(e)
assert st.code == grpc.StatusCode.INVALID_ARGUMENT.value[0], st
infos = [d for d in st.details if d.type_url.endswith("/google.rpc.ErrorInfo")]
assert len(infos) == 1, st
info = rpc.ErrorInfo()
infos[0].Unpack(info)
assert (info.domain, info.reason) == ("raftq", "INVALID_JOB"), info
assert info.metadata["index"] == "1", info
violations = [d for d in st.details if d.type_url.endswith("/google.rpc.BadRequest")]
br = rpc.BadRequest()
violations[0].Unpack(br)
assert br.field_violations[0].field.startswith("jobs[1]."), br
stats = call(ADDRS[0], "Stats", pb.StatsRequest(), pb.StatsResponse)
assert stats.rep_groups["py"].counts["ready"] == 3, "a refused Add added something"

# 3. a job key that is not in the queue: NOT_FOUND with the key in the details
key = "0" * 32
e = refused(ADDRS[0], "Touch", pb.TouchRequest(request_id=uuid.uuid4().bytes,
                                               job=pb.JobRef(key=key, fence=1)),
            pb.TouchResponse)
assert e.code() == grpc.StatusCode.NOT_FOUND, e
info = rpc.ErrorInfo()
details(e).details[0].Unpack(info)
assert (info.reason, info.metadata["key"]) == ("NOT_FOUND", key), info

# 4. a request id that is not 16 bytes: INVALID_ARGUMENT naming request_id
e = refused(ADDRS[0], "Add", pb.AddRequest(request_id=b"short"), pb.AddResponse)
assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "request_id" in e.details(), e

# 5. no token, a wrong token: UNAUTHENTICATED
e = refused(ADDRS[0], "Stats", pb.StatsRequest(), pb.StatsResponse, metadata=[])
assert e.code() == grpc.StatusCode.UNAUTHENTICATED, e
e = refused(ADDRS[0], "Stats", pb.StatsRequest(), pb.StatsResponse,
            metadata=[("authorization", "Bearer wrong-token-0123456789")])
assert e.code() == grpc.StatusCode.UNAUTHENTICATED, e

print("ok")
