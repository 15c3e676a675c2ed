"""The operator and sidecar images the test ground runs (e2e/lib/images.sh
writes them as OCI archives, without Docker) against what operator/Dockerfile
and mcp-sidecar/Dockerfile publish: the config of the final stage (USER,
ENTRYPOINT, CMD, EXPOSE), the files it copies, and what its base,
distroless/cc-debian12:nonroot, provides and leaves out. A ground that is
in step with the Dockerfiles tests what users run.

The lighter ground (MCPK_NODE=0) builds no images: the module is skipped."""

import dataclasses
import gzip
import io
import json
import os
import pathlib
import posixpath
import re
import shlex
import struct
import tarfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]
IMAGES = {"operator": ("operator/Dockerfile", "MCPK_OPERATOR_IMAGE"),
          "sidecar": ("mcp-sidecar/Dockerfile", "MCPK_SIDECAR_IMAGE")}
BASE_LIBRARIES = ("libc.so.6", "ld-linux-x86-64.so.2", "libgcc_s.so.1", "libssl.so.3", "libcrypto.so.3")
LIBRARY_DIRS = ("lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "lib", "usr/lib")
SHELLS_AND_PACKAGE_MANAGERS = {"sh", "bash", "dash", "busybox", "apt", "apt-get", "dpkg"}
MIB = 1 << 20


@dataclasses.dataclass
class Stage:
    """A Dockerfile's final stage, and the RUN lines of the stages before it."""
    base: str
    user: str
    entrypoint: list[str]
    cmd: list[str] | None
    ports: set[str]
    copies: list[tuple[str, str]]
    build_runs: list[str]

    def copied_files(self) -> set[str]:
        """The image paths of the files the stage copies: a file's
        destination, or for a directory the libraries the build stage's RUN
        lines that name it put there."""
        files = set()
        for src, dest in self.copies:
            if not dest.endswith("/"):
                files.add(dest)
            elif not src.endswith("/"):
                files.add(dest + posixpath.basename(src))
            else:
                names = {n for run in self.build_runs if src.rstrip("/") in run
                         for n in re.findall(r"\blib[\w+-]*\.so(?:\.\d+)+", run)}
                assert names, f"the build stage names no library it puts in {src}"
                files |= {dest + name for name in names}
        return {f.lstrip("/") for f in files}


def final_stage(path: pathlib.Path) -> Stage:
    lines = [line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")]
    text = re.sub(r"\\\n", " ", "\n".join(lines))
    instructions = [(word.upper(), rest.strip()) for word, _, rest in
                    (line.strip().partition(" ") for line in text.splitlines() if line.strip())]
    last_from = max(i for i, (word, _) in enumerate(instructions) if word == "FROM")
    final = instructions[last_from:]

    def last(word):
        values = [rest for w, rest in final if w == word]
        return values[-1] if values else None

    entrypoint, user = last("ENTRYPOINT"), last("USER")
    assert entrypoint and entrypoint.startswith("["), f"{path}: the final stage needs an exec-form ENTRYPOINT"
    assert user, f"{path}: the final stage sets no USER"
    copies = []
    for args in (shlex.split(rest) for word, rest in final if word == "COPY"):
        if any(a.startswith("--from=") for a in args):
            *sources, dest = [a for a in args if not a.startswith("--")]
            copies += [(src, dest) for src in sources]
    return Stage(
        base=final[0][1].split()[0],
        user=user,
        entrypoint=json.loads(entrypoint),
        # ENTRYPOINT in a stage clears the CMD its base had.
        cmd=json.loads(last("CMD")) if last("CMD") else None,
        ports={p if "/" in p else f"{p}/tcp" for w, rest in final if w == "EXPOSE" for p in rest.split()},
        copies=copies,
        build_runs=[rest for w, rest in instructions[:last_from] if w == "RUN"],
    )


class Image:
    """An OCI archive as oci_image.py writes it: index.json, one manifest,
    its config and gzip layers; `files` is the unpacked root (later layers win)."""

    def __init__(self, path: pathlib.Path):
        self.path = path
        with tarfile.open(path) as archive:
            def blob(descriptor):
                return archive.extractfile("blobs/sha256/" + descriptor["digest"].split(":", 1)[1]).read()

            self.index = json.loads(archive.extractfile("index.json").read())
            manifest = json.loads(blob(self.index["manifests"][0]))
            self.config = json.loads(blob(manifest["config"]))
            raw = [gzip.decompress(blob(layer)) for layer in manifest["layers"]]
        self.unpacked_size = sum(map(len, raw))
        self.layers = [tarfile.open(fileobj=io.BytesIO(data)) for data in raw]
        self.files = {m.name: (layer, m) for layer in self.layers for m in layer.getmembers()}

    def members(self):
        return [m for layer in self.layers for m in layer.getmembers()]

    def resolve(self, path: str) -> tarfile.TarInfo | None:
        """The member `path` names inside the container: symbolic links
        followed, in its directories too."""
        todo, done, hops = [p for p in path.split("/") if p], [], 0
        while todo:
            part = todo.pop(0)
            if part in (".", ".."):
                done = done[:-1] if part == ".." else done
                continue
            entry = self.files.get("/".join(done + [part]))
            if entry is None:
                return None
            if entry[1].issym():
                hops += 1
                if hops > 40:
                    return None
                target = entry[1].linkname
                todo = [p for p in target.split("/") if p] + todo
                done = [] if target.startswith("/") else done
                continue
            done.append(part)
        member = self.files.get("/".join(done), (None, None))[1]
        return self.files[member.linkname][1] if member is not None and member.islnk() else member

    def read(self, path: str) -> bytes:
        member = self.resolve(path)
        assert member is not None and member.isreg(), f"{self.path}: no file {path}"
        layer = next(layer for layer, m in self.files.values() if m is member)
        return layer.extractfile(member).read()

    def ids(self, user: str) -> tuple[int, int]:
        """USER `name-or-uid[:group-or-gid]` as numbers, names looked up in the
        image's /etc/passwd and /etc/group; no group: the user's own."""
        passwd = [line.split(":") for line in self.read("etc/passwd").decode().splitlines() if line]
        groups = [line.split(":") for line in self.read("etc/group").decode().splitlines() if line]
        name, _, group = user.partition(":")
        entry = next((e for e in passwd if name in (e[0], e[2])), None)
        assert entry or name.isdigit(), f"user {name} is not in the image's /etc/passwd"
        uid = int(name) if name.isdigit() else int(entry[2])
        if not group:
            return uid, int(entry[3]) if entry else 0
        gentry = next((g for g in groups if group in (g[0], g[2])), None)
        assert gentry or group.isdigit(), f"group {group} is not in the image's /etc/group"
        return uid, int(group) if group.isdigit() else int(gentry[2])


@dataclasses.dataclass
class Built:
    ref: str
    stage: Stage
    image: Image


@pytest.fixture(scope="module", params=sorted(IMAGES))
def built(request, stack_env) -> Built:
    if "MCPK_SIDECAR_IMAGE" not in stack_env:
        pytest.skip("this ground has no images (started with MCPK_NODE=0: the env file has no MCPK_SIDECAR_IMAGE)")
    dockerfile, ref_var = IMAGES[request.param]
    archive = pathlib.Path(stack_env["MCPK_STACK_DIR"]) / "images" / f"{request.param}.tar"
    assert archive.exists(), f"{archive} is missing although the env file names {stack_env[ref_var]}"
    image = Image(archive)
    files = sum(m.isreg() for _, m in image.files.values())
    print(f"\nimage {stack_env[ref_var]}: archive {os.path.getsize(archive) / MIB:.1f} MiB, "
          f"unpacked {image.unpacked_size / MIB:.1f} MiB, {files} files")
    return Built(stack_env[ref_var], final_stage(ROOT / dockerfile), image)


def test_the_config_is_the_dockerfiles(built):
    """User (as numbers), Entrypoint, Cmd and ExposedPorts: what a Pod
    runs, as whom and on which port, is what the Dockerfile publishes."""
    config, stage, image = built.image.config["config"], built.stage, built.image
    assert image.ids(config["User"]) == image.ids(stage.user), (config["User"], stage.user)
    assert config["Entrypoint"] == stage.entrypoint
    assert config.get("Cmd") == stage.cmd
    assert set(config.get("ExposedPorts") or {}) == stage.ports


def test_the_archive_is_named_as_the_ground_says(built):
    """containerd names the imported image after the index's annotation:
    the name the chart and the operator use, so the kubelet never pulls."""
    [manifest] = built.image.index["manifests"]
    annotations = manifest["annotations"]
    assert annotations["io.containerd.image.name"] == built.ref
    assert annotations["org.opencontainers.image.ref.name"] == built.ref.rsplit(":", 1)[1]
    assert manifest["platform"] == {"architecture": "amd64", "os": "linux"}


def test_the_binary_and_what_the_dockerfile_copies(built):
    """The entrypoint is a file the Dockerfile copies, there, executable, an
    x86-64 ELF whose interpreter the image has; the other files it copies
    (the sidecar's zlib) are there too, as regular files."""
    image, stage = built.image, built.stage
    copied = stage.copied_files()
    binary = stage.entrypoint[0].lstrip("/")
    assert binary in copied, f"the Dockerfile's ENTRYPOINT {stage.entrypoint[0]} is none of its COPY destinations"
    for path in sorted(copied):
        member = image.resolve(path)
        assert member is not None and member.isreg(), f"{path} is missing from the image"
    assert image.resolve(binary).mode & 0o111 == 0o111, oct(image.resolve(binary).mode)
    elf = image.read(binary)
    assert elf[:6] == b"\x7fELF\x02\x01" and struct.unpack_from("<H", elf, 0x12)[0] == 62, "not an x86-64 ELF"
    phoff, = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    headers = [struct.unpack_from("<IIQQQQ", elf, phoff + i * phentsize) for i in range(phnum)]
    [interpreter] = [elf[h[2]:h[2] + h[5]].rstrip(b"\0").decode() for h in headers if h[0] == 3]
    member = image.resolve(interpreter)
    assert member is not None and member.isreg(), f"the binary's interpreter {interpreter} is not in the image"


def test_the_base_is_what_distroless_cc_provides(built):
    """glibc and its loader, libgcc, libssl/libcrypto 3 where the loader
    looks, the CA bundle, the non-root user 65532 and a sticky /tmp."""
    image = built.image
    assert built.stage.base.startswith("gcr.io/distroless/cc-debian12"), built.stage.base
    for library in BASE_LIBRARIES:
        found = [d for d in LIBRARY_DIRS if (m := image.resolve(f"{d}/{library}")) is not None and m.isreg()]
        assert found, f"{library} is in none of {LIBRARY_DIRS}"
    assert b"-----BEGIN CERTIFICATE-----" in image.read("etc/ssl/certs/ca-certificates.crt")
    passwd = [line.split(":") for line in image.read("etc/passwd").decode().splitlines() if line]
    assert ["nonroot", "x", "65532", "65532"] in [e[:4] for e in passwd], passwd
    tmp = image.resolve("tmp")
    assert tmp is not None and tmp.isdir(), "the image has no /tmp directory"
    assert tmp.mode & 0o7777 == 0o1777, oct(tmp.mode)


def test_no_shell_and_no_package_manager(built):
    """Nothing to exec into or install with: no member of any layer is
    named like a shell or Debian's package tools."""
    found = [m.name for m in built.image.members()
             if not m.isdir() and posixpath.basename(m.name) in SHELLS_AND_PACKAGE_MANAGERS]
    assert not found, found


def test_root_owns_everything_but_the_users_home(built):
    """As in distroless: root owns every file of every layer, but the
    image user's home, which that user owns (it is the working directory)."""
    image = built.image
    uid, gid = image.ids(image.config["config"]["User"])
    [home] = [e[5] for e in (line.split(":") for line in image.read("etc/passwd").decode().splitlines()) if e[2] == str(uid)]
    others = {m.name: (m.uid, m.gid) for m in image.members() if (m.uid, m.gid) != (0, 0)}
    assert others == {home.lstrip("/"): (uid, gid)}
