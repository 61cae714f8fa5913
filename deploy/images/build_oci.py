#!/usr/bin/env python3
"""Builds a single-layer OCI image archive (an "OCI layout" tarball) from a root filesystem directory.

deploy/images/build.sh uses it for the images every Flotilla node imports at start. No registry,
no docker, no buildkit: an OCI image is only a handful of content-addressed files. The output is
accepted by `ctr images import` (containerd 1.6, which the agent runs) and by
`skopeo copy oci-archive:`. Only the Python standard library is needed.

The steps, in the order the files depend on each other:

1. Layer: a tar of the rootfs directory. Entries are sorted, owned by 0:0, with a fixed mtime, so the
   same input gives byte-identical output and therefore the same digests (re-imports are no-ops).
   The layer is gzip-compressed (gzip header mtime 0, also for reproducibility).
     diff_id      = sha256 of the *uncompressed* tar  (goes into the image config)
     layer digest = sha256 of the *compressed* blob    (goes into the manifest)
2. Image config (application/vnd.oci.image.config.v1+json): platform, the runtime defaults
   (Entrypoint, Cmd, Env, WorkingDir, User, Labels) and `rootfs.diff_ids`.
3. Manifest (application/vnd.oci.image.manifest.v1+json): descriptors (mediaType, digest, size) of
   the config and of the layer.
4. index.json: the entry point of an OCI layout. It lists the manifest's descriptor with its platform
   and two annotations: `io.containerd.image.name` (the full name containerd registers, e.g.
   `flotilla.local/busybox:1`) and `org.opencontainers.image.ref.name` (the tag, the OCI standard one).
5. oci-layout: `{"imageLayoutVersion": "1.0.0"}`.
6. The archive: a plain tar of oci-layout, index.json and blobs/sha256/<hex> for every blob.

Usage:
  build_oci.py --rootfs DIR --name REF --out FILE.tar [--entrypoint JSON] [--cmd JSON]
               [--env K=V ...] [--user U] [--workdir D] [--label K=V ...]
Prints the manifest digest on stdout.
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import platform
import sys
import tarfile

# 2000-01-01T00:00:00Z: a fixed timestamp keeps digests stable across builds.
FIXED_EPOCH = 946684800
FIXED_CREATED = "2000-01-01T00:00:00Z"

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


def go_arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}.get(machine, machine)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def rootfs_tar(rootfs: str) -> bytes:
    """Step 1a: a reproducible uncompressed tar of `rootfs` (paths relative, no leading slash)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        paths = []
        for directory, subdirs, files in os.walk(rootfs):
            subdirs.sort()
            for name in sorted(subdirs + files):
                paths.append(os.path.join(directory, name))
        for path in sorted(paths):
            relative = os.path.relpath(path, rootfs)
            info = tar.gettarinfo(path, arcname=relative)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = FIXED_EPOCH
            info.pax_headers = {}
            if info.isfile():
                with open(path, "rb") as handle:
                    tar.addfile(info, handle)
            else:
                tar.addfile(info)
    return buffer.getvalue()


def gzip_bytes(data: bytes) -> bytes:
    """Step 1b: gzip with a zero header mtime and no file name, so output depends only on input."""
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0, filename="") as handle:
        handle.write(data)
    return buffer.getvalue()


def canonical_json(value) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def key_values(pairs):
    result = {}
    for pair in pairs or []:
        key, _, value = pair.partition("=")
        result[key] = value
    return result


def build(args) -> str:
    arch = go_arch()
    blobs = {}  # hex digest -> bytes

    # Step 1: layer.
    layer = rootfs_tar(args.rootfs)
    diff_id = "sha256:" + sha256_hex(layer)
    layer_blob = gzip_bytes(layer)
    layer_hex = sha256_hex(layer_blob)
    blobs[layer_hex] = layer_blob

    # Step 2: image config.
    runtime_config = {"Env": args.env or ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]}
    if args.entrypoint:
        runtime_config["Entrypoint"] = json.loads(args.entrypoint)
    if args.cmd:
        runtime_config["Cmd"] = json.loads(args.cmd)
    if args.user:
        runtime_config["User"] = args.user
    if args.workdir:
        runtime_config["WorkingDir"] = args.workdir
    if args.label:
        runtime_config["Labels"] = key_values(args.label)
    config = {
        "created": FIXED_CREATED,
        "architecture": arch,
        "os": "linux",
        "config": runtime_config,
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": FIXED_CREATED, "created_by": "flotilla build_oci.py"}],
    }
    config_blob = canonical_json(config)
    config_hex = sha256_hex(config_blob)
    blobs[config_hex] = config_blob

    # Step 3: manifest.
    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": {"mediaType": MEDIA_CONFIG, "digest": "sha256:" + config_hex, "size": len(config_blob)},
        "layers": [
            {"mediaType": MEDIA_LAYER_GZIP, "digest": "sha256:" + layer_hex, "size": len(layer_blob)}
        ],
    }
    manifest_blob = canonical_json(manifest)
    manifest_hex = sha256_hex(manifest_blob)
    blobs[manifest_hex] = manifest_blob

    # Step 4: index.json.
    tag = args.name.rsplit(":", 1)[1] if ":" in args.name.rsplit("/", 1)[-1] else "latest"
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": MEDIA_MANIFEST,
                "digest": "sha256:" + manifest_hex,
                "size": len(manifest_blob),
                "platform": {"architecture": arch, "os": "linux"},
                "annotations": {
                    "io.containerd.image.name": args.name,
                    "org.opencontainers.image.ref.name": tag,
                },
            }
        ],
    }

    # Steps 5 and 6: oci-layout and the archive itself.
    def add(tar, name, data, mode=0o644):
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mode = mode
        info.mtime = FIXED_EPOCH
        tar.addfile(info, io.BytesIO(data))

    def add_dir(tar, name):
        info = tarfile.TarInfo(name)
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
        info.mtime = FIXED_EPOCH
        tar.addfile(info)

    temporary = args.out + ".tmp"
    with tarfile.open(temporary, mode="w", format=tarfile.PAX_FORMAT) as tar:
        add(tar, "oci-layout", canonical_json({"imageLayoutVersion": "1.0.0"}))
        add(tar, "index.json", canonical_json(index))
        add_dir(tar, "blobs")
        add_dir(tar, "blobs/sha256")
        for hex_digest in sorted(blobs):
            add(tar, "blobs/sha256/" + hex_digest, blobs[hex_digest])
    os.replace(temporary, args.out)

    print(
        f"built {args.name}: manifest sha256:{manifest_hex}, layer {len(layer)} bytes "
        f"({len(layer_blob)} gzipped), archive {os.path.getsize(args.out)} bytes",
        file=sys.stderr,
    )
    return "sha256:" + manifest_hex


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rootfs", required=True)
    parser.add_argument("--name", required=True, help="full image reference, e.g. flotilla.local/busybox:1")
    parser.add_argument("--out", required=True)
    parser.add_argument("--entrypoint", help='JSON array, e.g. ["/pause"]')
    parser.add_argument("--cmd", help='JSON array, e.g. ["sh"]')
    parser.add_argument("--env", action="append", help="K=V, repeatable (replaces the default PATH)")
    parser.add_argument("--user")
    parser.add_argument("--workdir")
    parser.add_argument("--label", action="append", help="K=V, repeatable")
    print(build(parser.parse_args()))


if __name__ == "__main__":
    main()
