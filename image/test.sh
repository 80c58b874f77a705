#!/usr/bin/env bash
# Checks the image that build.sh made, without any container engine:
#   1. the OCI layout: oci-layout and JSON valid, every blob's sha256 and size as its descriptor
#      says, the config's diff_id that of the unpacked layer, User/Entrypoint as expected;
#   2. unpacks the layer to a rootfs and, as root with runc installed (apt-get install runc), runs
#      the image's entrypoint in a runc container the way the chart runs the pod: user
#      65532:65532, no capabilities, no new privileges, read-only root, the image's Env and
#      WorkingDir, 512 MiB memory and 256 pids cgroup limits (runc's own spec has no seccomp
#      filter; README shows the containerd run with its default seccomp profile):
#        a. the operator with no kubeconfig and no in-cluster env: must fail fast with kube's
#           "failed to infer config" error (it reads ~/.kube/config of nonroot: /etc/passwd works);
#        b. `emco-operator render-worker` (what the operator re-executes for each chart) renders a
#           one-template chart from stdin.
#      Without runc (or not root) it falls back to chroot, else stops after 1.
#   image/test.sh [target/image/emco-operator.oci.tar]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tarball=${1:-$root/target/image/emco-operator.oci.tar}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/layout" "$work/bundle" "$work/bundle/rootfs"

python3 - "$tarball" "$work" <<'PY'
import gzip, hashlib, json, os, sys, tarfile
tarball, work = sys.argv[1], sys.argv[2]
layout = os.path.join(work, 'layout')
with tarfile.open(tarball) as t:
    t.extractall(layout)
def blob(desc):
    algo, hexd = desc['digest'].split(':')
    data = open(os.path.join(layout, 'blobs', algo, hexd), 'rb').read()
    assert 'sha256:' + hashlib.sha256(data).hexdigest() == desc['digest'], f"digest mismatch {desc['digest']}"
    assert len(data) == desc['size'], f"size mismatch {desc['digest']}"
    return data
assert json.load(open(os.path.join(layout, 'oci-layout'))) == {'imageLayoutVersion': '1.0.0'}
index = json.load(open(os.path.join(layout, 'index.json')))
assert index['schemaVersion'] == 2 and len(index['manifests']) == 1
md = index['manifests'][0]
assert md['mediaType'] == 'application/vnd.oci.image.manifest.v1+json'
manifest = json.loads(blob(md))
assert manifest['config']['mediaType'] == 'application/vnd.oci.image.config.v1+json'
config = json.loads(blob(manifest['config']))
assert len(manifest['layers']) == len(config['rootfs']['diff_ids']) == 1
ld = manifest['layers'][0]
assert ld['mediaType'] == 'application/vnd.oci.image.layer.v1.tar+gzip'
layer = gzip.decompress(blob(ld))
assert 'sha256:' + hashlib.sha256(layer).hexdigest() == config['rootfs']['diff_ids'][0], 'diff_id mismatch'
c = config['config']
assert c['User'] == '65532:65532' and c['Entrypoint'] == ['/usr/local/bin/emco-operator'], c
open(os.path.join(work, 'layer.tar'), 'wb').write(layer)
json.dump(c, open(os.path.join(work, 'config.json'), 'w'))
import io
with tarfile.open(fileobj=io.BytesIO(layer)) as t:
    m = t.getmember('usr/local/bin/emco-operator')
    assert (m.uid, m.gid, m.mode) == (65532, 65532, 0o755), (m.uid, m.gid, oct(m.mode))
    names = t.getnames()
print(f"layout ok: {md['digest']} {index['manifests'][0].get('annotations', {}).get('io.containerd.image.name')}")
print(f"  config {manifest['config']['digest']}, layer {ld['digest']} ({ld['size']} bytes), {len(names)} entries")
PY

tar --numeric-owner -xpf "$work/layer.tar" -C "$work/bundle/rootfs" 2>/dev/null || tar -xf "$work/layer.tar" -C "$work/bundle/rootfs"
cat >"$work/job.json" <<'JSON'
{"chart":{"name":"probe","version":"0.1.0","app_version":null,"metadata":{"apiVersion":"v2","name":"probe","version":"0.1.0"},"values":{},"templates":[{"path":"templates/cm.yaml","source":"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-cm\ndata:\n  replicas: \"{{ .Values.replicas }}\"\n"}]},"values":{"replicas":2},"ctx":{"release_name":"probe","release_namespace":"default","revision":1,"kube_version":"v1.35.0","api_versions":["v1"]}}
JSON

if [[ $(id -u) != 0 ]]; then
  echo "not root: layout checked, containers not run"; exit 0
fi
if ! command -v runc >/dev/null; then
  echo "no runc: running the unpacked image with chroot --userspec=65532:65532 instead"
  set +e
  env -i PATH=/usr/local/bin HOME=/home/nonroot chroot --userspec=65532:65532 "$work/bundle/rootfs" /usr/local/bin/emco-operator
  echo "exit $?"
  env -i EMCO_RENDER_WORKER_MEMORY_MIB=256 chroot --userspec=65532:65532 "$work/bundle/rootfs" /usr/local/bin/emco-operator render-worker <"$work/job.json"
  echo " exit $?"
  exit 0
fi

# runc, as kubelet + containerd would run the pod (minus the seccomp filter).
cd "$work/bundle"
runc spec
spec() { python3 - "$work/config.json" "$@" <<'PY'
import json, sys
image = json.load(open(sys.argv[1])); args = sys.argv[2:]
s = json.load(open('config.json'))
p = s['process']
p['terminal'] = False
p['args'] = image['Entrypoint'] + args
p['env'] = image['Env'] + (['EMCO_RENDER_WORKER_MEMORY_MIB=256'] if args[:1] == ['render-worker'] else [])
p['cwd'] = image.get('WorkingDir') or '/'
uid, gid = image['User'].split(':')
p['user'] = {'uid': int(uid), 'gid': int(gid)}
p['noNewPrivileges'] = True
p['capabilities'] = {k: [] for k in ('bounding', 'effective', 'inheritable', 'permitted', 'ambient')}
s['root']['readonly'] = True
s['hostname'] = 'emco-operator'
s['linux']['resources'] = {'memory': {'limit': 512 * 1024 * 1024}, 'pids': {'limit': 256}}
json.dump(s, open('config.json', 'w'), indent=1)
PY
}
id=emco-image-test-$$
spec
echo "--- runc run: emco-operator with no kubeconfig (must fail fast with a readable error)"
set +e
timeout 30 runc run "$id-a" </dev/null >"$work/a.out" 2>&1
rc=$?
set -e
cat "$work/a.out"; echo "exit $rc"
[[ $rc == 1 ]] && grep -q 'failed to infer config' "$work/a.out" && grep -q '/home/nonroot/.kube/config' "$work/a.out" ||
  { echo "FAIL: expected kube's config error for user nonroot"; exit 1; }
spec render-worker
echo "--- runc run: emco-operator render-worker (the chart render worker the operator re-executes)"
set +e
timeout 30 runc run "$id-b" <"$work/job.json" >"$work/b.out" 2>&1
rc=$?
set -e
cat "$work/b.out"; echo " exit $rc"
[[ $rc == 0 ]] && grep -q '"probe-cm"' "$work/b.out" && grep -q '"replicas":"2"' "$work/b.out" ||
  { echo "FAIL: the render worker did not render"; exit 1; }
echo "image ok: ran under runc as 65532:65532, read-only root, no capabilities"
