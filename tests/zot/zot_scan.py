#!/usr/bin/env python3
"""Calls /scan.Scan/Scan the way zot's plugin branch does, through a client generated from
proto/scan/scan.proto with grpcio-tools (pip install grpcio-tools): `image` is repo:tag,
`registry.url` has no scheme, no credentials, no deadline, an insecure channel.

Usage: zot_scan.py PLUGIN_ADDR IMAGE REGISTRY_URL
Prints the response in protobuf's JSON mapping (exit 0), or {"code", "details"} of the gRPC
error (exit 3)."""

import importlib
import json
import os
import sys
import tempfile

import grpc
import grpc_tools
from google.protobuf import json_format
from google.protobuf import wrappers_pb2  # noqa: F401  (vendor_attributes hold StringValue in Any)
from grpc_tools import protoc


def main() -> int:
    addr, image, registry = sys.argv[1:4]
    proto_root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "proto")
    well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    with tempfile.TemporaryDirectory() as out:
        rc = protoc.main([
            "protoc", f"-I{proto_root}", f"-I{well_known}",
            f"--python_out={out}", f"--grpc_python_out={out}", "scan/scan.proto",
        ])
        if rc != 0:
            print(f"protoc failed with {rc}", file=sys.stderr)
            return 2
        sys.path.insert(0, out)
        scan_pb2 = importlib.import_module("scan.scan_pb2")
        scan_pb2_grpc = importlib.import_module("scan.scan_pb2_grpc")
        with grpc.insecure_channel(addr) as channel:
            stub = scan_pb2_grpc.ScanStub(channel)
            request = scan_pb2.ScanRequest(image=image, registry=scan_pb2.Registry(url=registry))
            try:
                response = stub.Scan(request)
            except grpc.RpcError as e:
                print(json.dumps({"code": e.code().name, "details": e.details()}))
                return 3
        print(json_format.MessageToJson(response, preserving_proto_field_name=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
