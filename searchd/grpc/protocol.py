"""The weaviate.v1 and grpc.health.v1 messages, compiled from searchd's own ``.proto`` files when the server starts.

grpcio-tools' protoc turns ``searchd/grpc/proto/**/*.proto`` into a descriptor set, and
protobuf's message factory builds the Python message classes from it: nothing
generated is committed or written into the package.  The classes live in a
descriptor pool of their own, not protobuf's default one, so a process that also
imports a Weaviate client (whose generated modules register the same
``weaviate.v1`` names in the default pool) loads both without a clash.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from searchd.errors import SearchdError

PROTO_ROOT = Path(str(resources.files("searchd.grpc") / "proto"))
FILES = (
    "grpc/health/v1/health.proto",
    "weaviate/v1/weaviate.proto",
)


def _well_known_include() -> str:
    """grpcio-tools ships google/protobuf/*.proto (struct.proto is imported by base.proto)."""
    spec = importlib.util.find_spec("grpc_tools")
    if spec is None or not spec.submodule_search_locations:
        raise SearchdError("grpcio-tools is not installed, and the gRPC API compiles its protocol files with it", "pip install grpcio-tools, or set server.grpc.enabled: false")
    return str(Path(next(iter(spec.submodule_search_locations))) / "_proto")


def compile_descriptors(root: Path = PROTO_ROOT) -> descriptor_pb2.FileDescriptorSet:
    """Run protoc over the .proto files (and what they import) into one descriptor set.

    protoc runs in a child process (about 70 ms): loaded into the server, its compiler stayed mapped for good
    (about 10 MB of the server's memory) after one use.
    """
    include = _well_known_include()
    with tempfile.TemporaryDirectory(prefix="searchd-proto-") as scratch:
        out = Path(scratch) / "descriptors.pb"
        command = [sys.executable, "-m", "grpc_tools.protoc", f"-I{root}", f"-I{include}", "--include_imports", f"--descriptor_set_out={out}", *FILES]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SearchdError(
                f"protoc could not compile the gRPC protocol files under {root} (exit status {done.returncode}: {done.stderr.strip()[:500]})",
                "reinstall searchd; its .proto files are part of the package",
            )
        return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


@dataclass(frozen=True)
class Protocol:
    """Message classes by full name (``weaviate.v1.SearchRequest``), from one private descriptor pool."""

    pool: descriptor_pool.DescriptorPool
    classes: dict[str, type[Any]]

    def __getattr__(self, name: str) -> type[Any]:
        """``protocol.SearchRequest``: the weaviate.v1 message of that name."""
        try:
            return self.classes[f"weaviate.v1.{name}"]
        except KeyError:
            raise AttributeError(name) from None

    def message(self, full_name: str) -> type[Any]:
        return self.classes[full_name]


def _collect(descriptor: Any, classes: dict[str, type[Any]]) -> None:
    classes[descriptor.full_name] = message_factory.GetMessageClass(descriptor)
    for nested in descriptor.nested_types:
        _collect(nested, classes)


def load_protocol(descriptors: descriptor_pb2.FileDescriptorSet | None = None) -> Protocol:
    found = compile_descriptors() if descriptors is None else descriptors
    pool = descriptor_pool.DescriptorPool()
    for file in found.file:
        pool.Add(file)
    classes: dict[str, type[Any]] = {}
    for file in found.file:
        for message in pool.FindFileByName(file.name).message_types_by_name.values():
            _collect(message, classes)
    return Protocol(pool, classes)
