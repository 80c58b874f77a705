#!/usr/bin/env bash
# Builds the operator's container image as an OCI image layout tarball, without any container
# engine: bash, coreutils, ldd and python3 (its standard library: tarfile, gzip, hashlib, json).
#
#   image/build.sh [BINARY]        # default: target/release/emco-operator (build it first:
#                                  #   cargo build --release -p emco-operator --bin emco-operator)
#
# Writes target/image/emco-operator.oci.tar (oci-layout, index.json, blobs/sha256/...) and prints
# the manifest digest and the sizes. One gzip layer holds:
#   /usr/local/bin/emco-operator   the binary, 0755, owned by 65532:65532. It is the whole
#                                  operator: it re-executes itself (/proc/self/exe render-worker)
#                                  as the chart render worker, so no second binary is needed.
#   the loader and shared libraries the binary needs, as `ldd` resolves them on THIS machine
#   (glibc, libm, libgcc_s): build the binary here, or on a machine with the same glibc.
#   /etc/passwd, /etc/group        root, nobody and nonroot (65532), as in distroless.
#   /etc/nsswitch.conf, /etc/ssl/certs/ca-certificates.crt (chart repositories over HTTPS),
#   /tmp (1777), /home/nonroot (65532).
# Config: User 65532:65532, Entrypoint /usr/local/bin/emco-operator, PATH (the chart's pod spec
# runs `command: [emco-operator]`), SSL_CERT_FILE, WorkingDir /home/nonroot.
#
# Deterministic: entries sorted, every mtime SOURCE_DATE_EPOCH (default 0), numeric owners,
# gzip without name or time; the same binary and libraries give the same digest.
#
# Environment: IMAGE (default ghcr.io/emco-rs/emco-operator:<workspace version>, the chart's
# default repository and appVersion), SOURCE_DATE_EPOCH, STRIP=1 to strip the binary's symbols
# (smaller image, panics' backtraces without function names), OUT (default target/image).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${1:-$root/target/release/emco-operator}
[[ -f $bin && -x $bin ]] || { echo "build.sh: no executable at $bin; build it first:" \
  "cargo build --release -p emco-operator --bin emco-operator" >&2; exit 1; }
version=$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$root/Cargo.toml" | head -1)
image=${IMAGE:-ghcr.io/emco-rs/emco-operator:${version:-latest}}
out=${OUT:-$root/target/image}
mkdir -p "$out"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$bin" "$work/emco-operator"
if [[ ${STRIP:-0} == 1 ]]; then strip --strip-all "$work/emco-operator"; fi

# The loader and the libraries: `ldd` lines are "name => /path (addr)" or "/path (addr)".
libs=()
if ldd "$work/emco-operator" >"$work/ldd" 2>&1; then
  while read -r line; do
    case $line in
      *'=> not found'*) echo "build.sh: $line" >&2; exit 1 ;;
      *linux-vdso*|*linux-gate*) ;;
      *'=> /'*) p=${line#*=> }; libs+=("${p%% (*}") ;;
      /*) libs+=("${line%% (*}") ;;
    esac
  done <"$work/ldd"
elif grep -qE 'not a dynamic executable|statically linked' "$work/ldd"; then
  echo "build.sh: static binary, no libraries added"
else
  cat "$work/ldd" >&2; exit 1
fi

python3 - "$work/emco-operator" "$out/emco-operator.oci.tar" "$image" "${SOURCE_DATE_EPOCH:-0}" "$version" "${libs[@]}" <<'PY'
import gzip, hashlib, io, json, os, sys, tarfile, time

binary, out_tar, image, epoch, version, libs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], sys.argv[6:]
NONROOT = 65532

with open(binary, 'rb') as f:
    head = f.read(20)
assert head[:4] == b'\x7fELF', 'not an ELF binary'
arch = {62: 'amd64', 183: 'arm64'}.get(int.from_bytes(head[18:20], 'little'))
assert arch, 'unknown ELF machine'

entries = {}  # path in the image -> (kind, mode, uid, gid, data or link target)
def d(path, mode=0o755, uid=0, gid=0): entries[path] = ('dir', mode, uid, gid, None)
def f(path, data, mode=0o644, uid=0, gid=0): entries[path] = ('file', mode, uid, gid, data)
def parents(path):
    parts = path.split('/')[:-1]
    for i in range(1, len(parts) + 1):
        entries.setdefault('/'.join(parts[:i]), ('dir', 0o755, 0, 0, None))

f('etc/passwd', b'root:x:0:0:root:/root:/sbin/nologin\n'
                b'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n'
                b'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n')
f('etc/group', b'root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n')
f('etc/nsswitch.conf', b'passwd: files\ngroup: files\nhosts: files dns\n')
ca = '/etc/ssl/certs/ca-certificates.crt'
if os.path.exists(ca):
    f(ca.lstrip('/'), open(ca, 'rb').read())
else:
    print(f'build.sh: warning: no {ca} on this machine; HTTPS chart repositories will fail', file=sys.stderr)
d('tmp', 0o1777)
d('home')
d('home/nonroot', 0o700, NONROOT, NONROOT)
d('root', 0o700)
for lib in libs:
    # Stored at the path the binary's loader looks in (e.g. /lib64/ld-linux-x86-64.so.2 and
    # /lib/x86_64-linux-gnu/libc.so.6), as regular files.
    f(lib.lstrip('/'), open(os.path.realpath(lib), 'rb').read(), 0o755)
f('usr/local/bin/emco-operator', open(binary, 'rb').read(), 0o755, NONROOT, NONROOT)
for p in list(entries):
    parents(p)

def tar_bytes(items):
    """A deterministic POSIX tar of (name, kind, mode, uid, gid, data), in the order given."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w', format=tarfile.PAX_FORMAT) as t:
        for name, kind, mode, uid, gid, data in items:
            ti = tarfile.TarInfo(name)
            ti.mode, ti.uid, ti.gid, ti.mtime, ti.uname, ti.gname = mode, uid, gid, epoch, '', ''
            if kind == 'dir':
                ti.type = tarfile.DIRTYPE
                t.addfile(ti)
            else:
                ti.size = len(data)
                t.addfile(ti, io.BytesIO(data))
    return buf.getvalue()

layer_tar = tar_bytes([(p, *entries[p]) for p in sorted(entries)])
gz = io.BytesIO()
with gzip.GzipFile(filename='', mode='wb', fileobj=gz, mtime=0, compresslevel=9) as g:
    g.write(layer_tar)
layer_gz = gz.getvalue()
sha = lambda b: 'sha256:' + hashlib.sha256(b).hexdigest()
canon = lambda o: json.dumps(o, sort_keys=True, separators=(',', ':')).encode()
created = time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(epoch))

labels = {'org.opencontainers.image.title': 'emco-operator',
          'org.opencontainers.image.version': version,
          'org.opencontainers.image.description': 'EMCO as a Kubernetes operator'}
config = canon({
    'created': created, 'architecture': arch, 'os': 'linux',
    'config': {
        'User': f'{NONROOT}:{NONROOT}',
        'Entrypoint': ['/usr/local/bin/emco-operator'],
        'Env': ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
                'SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt'],
        'WorkingDir': '/home/nonroot',
        'Labels': labels,
    },
    'rootfs': {'type': 'layers', 'diff_ids': [sha(layer_tar)]},
    'history': [{'created': created, 'created_by': 'image/build.sh'}],
})
manifest = canon({
    'schemaVersion': 2,
    'mediaType': 'application/vnd.oci.image.manifest.v1+json',
    'config': {'mediaType': 'application/vnd.oci.image.config.v1+json', 'digest': sha(config), 'size': len(config)},
    'layers': [{'mediaType': 'application/vnd.oci.image.layer.v1.tar+gzip', 'digest': sha(layer_gz), 'size': len(layer_gz)}],
    'annotations': labels,
})
tag = image.rsplit(':', 1)[1] if ':' in image.rsplit('/', 1)[-1] else 'latest'
index = canon({
    'schemaVersion': 2,
    'mediaType': 'application/vnd.oci.image.index.v1+json',
    'manifests': [{
        'mediaType': 'application/vnd.oci.image.manifest.v1+json', 'digest': sha(manifest), 'size': len(manifest),
        'platform': {'architecture': arch, 'os': 'linux'},
        # containerd (ctr import, kind load) and docker load name the image from the first,
        # skopeo and umoci (oci-archive:FILE:TAG) from the second.
        'annotations': {'io.containerd.image.name': image, 'org.opencontainers.image.ref.name': tag},
    }],
})
blobs = {sha(b)[7:]: b for b in (layer_gz, config, manifest)}
items = [('blobs', 'dir', 0o755, 0, 0, None), ('blobs/sha256', 'dir', 0o755, 0, 0, None)]
items += [(f'blobs/sha256/{h}', 'file', 0o644, 0, 0, blobs[h]) for h in sorted(blobs)]
items += [('index.json', 'file', 0o644, 0, 0, index),
          ('oci-layout', 'file', 0o644, 0, 0, canon({'imageLayoutVersion': '1.0.0'}))]
archive = tar_bytes(items)
with open(out_tar + '.part', 'wb') as o:
    o.write(archive)
os.replace(out_tar + '.part', out_tar)

mib = lambda n: f'{n / 1048576:.1f} MiB'
print(f'image:    {image} ({arch})')
print(f'file:     {out_tar} ({mib(len(archive))})')
print(f'digest:   {sha(manifest)}  (manifest; what a registry and containerd report)')
print(f'layer:    {sha(layer_gz)}  {mib(len(layer_gz))} compressed, {mib(len(layer_tar))} unpacked')
print(f'contents: ' + ', '.join('/' + p for p in sorted(entries) if entries[p][0] == 'file'))
PY
