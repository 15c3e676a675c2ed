#!/usr/bin/env python3
"""Writes an OCI image archive (an OCI layout in one tar) from directories.

No Docker and no registry on the test ground: e2e/lib/images.sh lays out
each layer's files in a directory and this turns them into what
`ctr images import` reads. Layers are deterministic (sorted entries, mtime 0,
numeric owners taken from the files, gzip without a timestamp), so the same
files give the same digests.

    oci_image.py --out A.tar --name REF --layer DIR [--layer DIR...]
                 [--user U:G] [--entrypoint JSON] [--cmd JSON]
                 [--port N/tcp...] [--env K=V...] [--workdir DIR]
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def _normalize(info: tarfile.TarInfo) -> tarfile.TarInfo:
    # Owners and modes are the files' own (images.sh sets them, e.g. the
    # non-root user's home); names and times would only add noise.
    info.mtime = 0
    info.uname = ""
    info.gname = ""
    return info


def layer_tar(root: str) -> bytes:
    """The uncompressed layer: every entry under root, root itself as '.'"""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(os.listdir(root)):
            # TarFile.add recurses in sorted order since Python 3.7.
            tar.add(os.path.join(root, name), arcname=name, filter=_normalize)
    return buf.getvalue()


def gz(data: bytes) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, compresslevel=6) as f:
        f.write(data)
    return buf.getvalue()


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--name", required=True, help="full reference, e.g. example.org/img:1.0")
    p.add_argument("--layer", action="append", required=True)
    p.add_argument("--user", default="")
    p.add_argument("--entrypoint", default="null")
    p.add_argument("--cmd", default="null")
    p.add_argument("--port", action="append", default=[])
    p.add_argument("--env", action="append", default=[])
    p.add_argument("--workdir", default="")
    args = p.parse_args()

    blobs: dict[str, bytes] = {}
    layers, diff_ids = [], []
    for root in args.layer:
        if not os.path.isdir(root):
            print(f"oci_image: layer directory {root} does not exist", file=sys.stderr)
            return 2
        raw = layer_tar(root)
        blob = gz(raw)
        blobs[digest(blob)] = blob
        diff_ids.append(digest(raw))
        layers.append({"mediaType": OCI_LAYER, "digest": digest(blob), "size": len(blob)})

    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "User": args.user,
            "Env": args.env,
            "Entrypoint": json.loads(args.entrypoint),
            "Cmd": json.loads(args.cmd),
            "WorkingDir": args.workdir,
            "ExposedPorts": {port: {} for port in args.port},
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": "e2e/lib/images.sh"} for _ in layers],
    }
    config_blob = canonical(config)
    blobs[digest(config_blob)] = config_blob
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": digest(config_blob), "size": len(config_blob)},
        "layers": layers,
    }
    manifest_blob = canonical(manifest)
    blobs[digest(manifest_blob)] = manifest_blob
    tag = args.name.rsplit(":", 1)[1] if ":" in args.name.rsplit("/", 1)[-1] else "latest"
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                "digest": digest(manifest_blob),
                "size": len(manifest_blob),
                "platform": {"architecture": "amd64", "os": "linux"},
                # containerd names the imported image after the first.
                "annotations": {
                    "io.containerd.image.name": args.name,
                    "org.opencontainers.image.ref.name": tag,
                },
            }
        ],
    }

    tmp = args.out + ".tmp"
    with tarfile.open(tmp, mode="w", format=tarfile.PAX_FORMAT) as tar:

        def put(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))

        put("oci-layout", canonical({"imageLayoutVersion": "1.0.0"}))
        put("index.json", canonical(index))
        for d in sorted(blobs):
            put("blobs/sha256/" + d.split(":", 1)[1], blobs[d])
    os.replace(tmp, args.out)
    print(digest(manifest_blob))
    return 0


if __name__ == "__main__":
    sys.exit(main())
