#!/usr/bin/env bash
# Makes the pod sandbox ("pause") image of the bed's real node without any registry: a static
# pause binary compiled from the few lines of C below (gcc -static), or, without gcc or a static
# libc, busybox-static's `sleep`, packed as an OCI image layout tarball the way image/build.sh
# packs the operator (one deterministic gzip layer, python3's standard library only).
#
#   pause-image.sh [OUT]    # default: $BED_DIR/node/pause.oci.tar; prints the image reference
#
# The image is PAUSE_IMAGE (default emco.local/pause:bed), the sandbox_image node.sh gives
# containerd. A second run with the same inputs leaves the tarball as it is.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
out=${1:-$BED_DIR/node/pause.oci.tar}
image=${PAUSE_IMAGE:-emco.local/pause:bed}
mkdir -p "$(dirname "$out")"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# What upstream's pause does: PID 1 of the sandbox, reaps children, exits on SIGINT/SIGTERM.
cat >"$work/pause.c" <<'C'
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
static void die(int sig) { (void)sig; _exit(0); }
static void reap(int sig) { (void)sig; while (waitpid(-1, NULL, WNOHANG) > 0) {} }
int main(void) {
  struct sigaction stop = {.sa_handler = die}, child = {.sa_handler = reap, .sa_flags = SA_NOCLDSTOP};
  if (sigaction(SIGINT, &stop, NULL) || sigaction(SIGTERM, &stop, NULL) || sigaction(SIGCHLD, &child, NULL)) return 1;
  for (;;) pause();
}
C
entry=(/pause)
if command -v gcc >/dev/null 2>&1 && gcc -static -Os -s -o "$work/pause" "$work/pause.c" 2>"$work/gcc.log"; then
  how="gcc -static"
elif [ -x /bin/busybox ] && file -L /bin/busybox 2>/dev/null | grep -q 'statically linked'; then
  cp /bin/busybox "$work/pause"; entry=(/pause sleep 2147483647); how="busybox-static sleep"
else
  die "no pause image: need gcc with a static libc (apt-get install gcc libc6-dev) or busybox-static$( [ -s "$work/gcc.log" ] && echo ": $(tail -n1 "$work/gcc.log")")"
fi

case $(uname -m) in x86_64) arch=amd64 ;; aarch64) arch=arm64 ;; *) arch=$(uname -m) ;; esac
python3 - "$work/pause" "$out" "$image" "$how" "$arch" "${entry[@]}" <<'PY'
import gzip, hashlib, io, json, os, sys, tarfile
binary, out_tar, image, how, arch, entry = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6:]

def tar_bytes(items):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w', format=tarfile.PAX_FORMAT) as t:
        for name, mode, data in items:
            ti = tarfile.TarInfo(name)
            ti.mode, ti.uid, ti.gid, ti.mtime, ti.uname, ti.gname = mode, 0, 0, 0, '', ''
            if data is None:
                ti.type = tarfile.DIRTYPE
                t.addfile(ti)
            else:
                ti.size = len(data)
                t.addfile(ti, io.BytesIO(data))
    return buf.getvalue()

layer_tar = tar_bytes([('pause', 0o755, open(binary, 'rb').read())])
gz = io.BytesIO()
with gzip.GzipFile(filename='', mode='wb', fileobj=gz, mtime=0, compresslevel=9) as g:
    g.write(layer_tar)
layer_gz = gz.getvalue()
sha = lambda b: 'sha256:' + hashlib.sha256(b).hexdigest()
canon = lambda o: json.dumps(o, sort_keys=True, separators=(',', ':')).encode()
config = canon({
    'created': '1970-01-01T00:00:00Z', 'architecture': arch, 'os': 'linux',
    'config': {'User': '65535:65535', 'Entrypoint': entry, 'WorkingDir': '/'},
    'rootfs': {'type': 'layers', 'diff_ids': [sha(layer_tar)]},
    'history': [{'created': '1970-01-01T00:00:00Z', 'created_by': f'tests/e2e/bed/pause-image.sh ({how})'}],
})
manifest = canon({
    'schemaVersion': 2, 'mediaType': 'application/vnd.oci.image.manifest.v1+json',
    'config': {'mediaType': 'application/vnd.oci.image.config.v1+json', 'digest': sha(config), 'size': len(config)},
    'layers': [{'mediaType': 'application/vnd.oci.image.layer.v1.tar+gzip', 'digest': sha(layer_gz), 'size': len(layer_gz)}],
})
tag = image.rsplit(':', 1)[1] if ':' in image.rsplit('/', 1)[-1] else 'latest'
index = canon({
    'schemaVersion': 2, 'mediaType': 'application/vnd.oci.image.index.v1+json',
    'manifests': [{'mediaType': 'application/vnd.oci.image.manifest.v1+json', 'digest': sha(manifest),
                   'size': len(manifest), 'platform': {'architecture': arch, 'os': 'linux'},
                   'annotations': {'io.containerd.image.name': image, 'org.opencontainers.image.ref.name': tag}}],
})
blobs = {sha(b)[7:]: b for b in (layer_gz, config, manifest)}
items = [('blobs', 0o755, None), ('blobs/sha256', 0o755, None)]
items += [(f'blobs/sha256/{h}', 0o644, blobs[h]) for h in sorted(blobs)]
items += [('index.json', 0o644, index), ('oci-layout', 0o644, canon({'imageLayoutVersion': '1.0.0'}))]
archive = tar_bytes(items)
if not (os.path.exists(out_tar) and open(out_tar, 'rb').read() == archive):
    with open(out_tar + '.part', 'wb') as o:
        o.write(archive)
    os.replace(out_tar + '.part', out_tar)
print(image)
PY
