#!/usr/bin/env python3
"""Compares vmdep's P4Runtime protocol definitions with the official ones.

Usage: compare_protos.py DESCRIPTOR_SET

DESCRIPTOR_SET is a serialized google.protobuf.FileDescriptorSet of vmdep's proto/ files. The
official definitions come from the `p4runtime` package on PyPI (and googleapis-common-protos for
google.rpc). Every message, field, enum, enum value, oneof and service method must agree in both
directions: names, numbers, types, type names, labels, oneof membership and streaming flags.
Prints each mismatch and exits 1 if there is any; exits 2 if the official package is missing,
64 on a usage error.
"""

import os
import sys

# The generated modules of older p4runtime releases need the pure-Python protobuf runtime when
# a newer protobuf is installed; it is also what every protobuf version supports.
os.environ.setdefault("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "python")

try:
    from google.protobuf import descriptor_pb2
    from google.rpc import code_pb2, status_pb2
    from p4.config.v1 import p4info_pb2, p4types_pb2
    from p4.v1 import p4data_pb2, p4runtime_pb2
except ImportError as err:
    print(f"cannot import the official P4Runtime definitions ({err}); "
          "install them with `pip install p4runtime`", file=sys.stderr)
    sys.exit(2)

OFFICIAL_MODULES = [p4runtime_pb2, p4data_pb2, p4info_pb2, p4types_pb2, status_pb2, code_pb2]

LABELS = {v: k for k, v in descriptor_pb2.FieldDescriptorProto.Label.items()}
TYPES = {v: k for k, v in descriptor_pb2.FieldDescriptorProto.Type.items()}


def official_files():
    files = {}
    for module in OFFICIAL_MODULES:
        proto = descriptor_pb2.FileDescriptorProto()
        module.DESCRIPTOR.CopyToProto(proto)
        files[proto.name] = proto
    return files


def field_summary(msg, field):
    oneof = ""
    # proto3 `optional` fields live in a synthetic oneof; report them as such, not as a oneof.
    if field.HasField("oneof_index") and not field.proto3_optional:
        oneof = msg.oneof_decl[field.oneof_index].name
    return {
        "number": field.number,
        "type": TYPES[field.type],
        "type_name": field.type_name,
        "label": LABELS[field.label],
        "oneof": oneof,
        "proto3_optional": field.proto3_optional,
        "deprecated": field.options.deprecated,
    }


def compare_keys(kind, where, ours, theirs, errors):
    for name in sorted(set(ours) - set(theirs)):
        errors.append(f"{where}: {kind} {name} is ours only")
    for name in sorted(set(theirs) - set(ours)):
        errors.append(f"{where}: {kind} {name} is missing from ours")
    return sorted(set(ours) & set(theirs))


def compare_enum(where, ours, theirs, errors):
    ours_values = {v.name: v.number for v in ours.value}
    theirs_values = {v.name: v.number for v in theirs.value}
    for name in compare_keys("enum value", where, ours_values, theirs_values, errors):
        if ours_values[name] != theirs_values[name]:
            errors.append(f"{where}.{name}: number {ours_values[name]}, "
                          f"official {theirs_values[name]}")


def compare_message(where, ours, theirs, errors):
    ours_fields = {f.name: f for f in ours.field}
    theirs_fields = {f.name: f for f in theirs.field}
    for name in compare_keys("field", where, ours_fields, theirs_fields, errors):
        a = field_summary(ours, ours_fields[name])
        b = field_summary(theirs, theirs_fields[name])
        for key in a:
            if a[key] != b[key]:
                errors.append(f"{where}.{name}: {key} {a[key]!r}, official {b[key]!r}")
    compare_keys("oneof", where, {o.name for o in ours.oneof_decl},
                 {o.name for o in theirs.oneof_decl}, errors)
    if ours.options.map_entry != theirs.options.map_entry:
        errors.append(f"{where}: map_entry {ours.options.map_entry}, "
                      f"official {theirs.options.map_entry}")
    compare_children(where, ours, theirs, errors)


def compare_children(where, ours, theirs, errors):
    """Compares the nested (or, for a file, top-level) messages and enums."""
    ours_msgs = {m.name: m for m in messages_of(ours)}
    theirs_msgs = {m.name: m for m in messages_of(theirs)}
    for name in compare_keys("message", where, ours_msgs, theirs_msgs, errors):
        compare_message(f"{where}.{name}", ours_msgs[name], theirs_msgs[name], errors)
    ours_enums = {e.name: e for e in ours.enum_type}
    theirs_enums = {e.name: e for e in theirs.enum_type}
    for name in compare_keys("enum", where, ours_enums, theirs_enums, errors):
        compare_enum(f"{where}.{name}", ours_enums[name], theirs_enums[name], errors)


def messages_of(container):
    # A file keeps its top-level messages in message_type, a message its nested ones in nested_type.
    if isinstance(container, descriptor_pb2.FileDescriptorProto):
        return container.message_type
    return container.nested_type


def compare_services(where, ours, theirs, errors):
    ours_services = {s.name: s for s in ours.service}
    theirs_services = {s.name: s for s in theirs.service}
    for name in compare_keys("service", where, ours_services, theirs_services, errors):
        ours_methods = {m.name: m for m in ours_services[name].method}
        theirs_methods = {m.name: m for m in theirs_services[name].method}
        for method in compare_keys("method", f"{where}.{name}", ours_methods, theirs_methods,
                                   errors):
            a, b = ours_methods[method], theirs_methods[method]
            for key in ("input_type", "output_type", "client_streaming", "server_streaming"):
                if getattr(a, key) != getattr(b, key):
                    errors.append(f"{where}.{name}.{method}: {key} {getattr(a, key)!r}, "
                                  f"official {getattr(b, key)!r}")


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 64
    ours_set = descriptor_pb2.FileDescriptorSet()
    with open(sys.argv[1], "rb") as f:
        ours_set.ParseFromString(f.read())
    ours = {f.name: f for f in ours_set.file if not f.name.startswith("google/protobuf/")}
    theirs = official_files()
    errors = []
    for name in compare_keys("file", "descriptor set", ours, theirs, errors):
        a, b = ours[name], theirs[name]
        if a.package != b.package:
            errors.append(f"{name}: package {a.package!r}, official {b.package!r}")
        if (a.syntax or "proto2") != (b.syntax or "proto2"):
            errors.append(f"{name}: syntax {a.syntax!r}, official {b.syntax!r}")
        where = a.package
        compare_children(where, a, b, errors)
        compare_services(where, a, b, errors)
    for error in errors:
        print(error)
    checked = ", ".join(sorted(ours))
    print(f"{len(errors)} mismatch(es) in {checked}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
