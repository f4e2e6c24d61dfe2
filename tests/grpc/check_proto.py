"""Compare maas's gRPC definition with Triton's, message by message and field by field.

Usage: python check_proto.py DESCRIPTOR_SET

DESCRIPTOR_SET is the compiled FileDescriptorSet of gateway/proto/grpc_service.proto (the
black-box test writes maas_gateway::grpc::proto::FILE_DESCRIPTOR_SET); Triton's is the one tritonclient ships
(tritonclient.grpc.service_pb2). Every message, field (name, number, type, label, oneof), map and
RPC of maas's must be Triton's exactly. Prints "proto: matches Triton's" on success.
"""

import sys

from google.protobuf import descriptor_pb2
from tritonclient.grpc import service_pb2


def messages(prefix, message_types, out):
    for m in message_types:
        name = f"{prefix}.{m.name}"
        fields = {}
        for f in m.field:
            oneof = m.oneof_decl[f.oneof_index].name if f.HasField("oneof_index") else None
            fields[f.name] = (f.number, f.type, f.label, f.type_name, oneof)
        out[name] = fields
        messages(name, m.nested_type, out)
    return out


def main() -> None:
    ours = descriptor_pb2.FileDescriptorSet.FromString(open(sys.argv[1], "rb").read())
    [mine] = [f for f in ours.file if f.name == "grpc_service.proto"]
    triton = descriptor_pb2.FileDescriptorProto()
    service_pb2.DESCRIPTOR.CopyToProto(triton)
    assert mine.package == triton.package == "inference", (mine.package, triton.package)
    theirs = messages(".inference", triton.message_type, {})
    checked = 0
    for name, fields in messages(".inference", mine.message_type, {}).items():
        assert name in theirs, f"Triton has no message {name}"
        assert fields == theirs[name], f"{name} differs:\n maas   {fields}\n Triton {theirs[name]}"
        checked += 1
    [service] = mine.service
    [their_service] = [s for s in triton.service if s.name == service.name]
    their_methods = {m.name: m for m in their_service.method}
    for m in service.method:
        t = their_methods[m.name]
        assert (m.input_type, m.output_type, m.client_streaming, m.server_streaming) == (
            t.input_type,
            t.output_type,
            t.client_streaming,
            t.server_streaming,
        ), m.name
    print(f"proto: matches Triton's ({checked} messages, {len(service.method)} RPCs)")


if __name__ == "__main__":
    main()
