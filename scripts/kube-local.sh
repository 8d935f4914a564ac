#!/usr/bin/env bash
# A real single-node Kubernetes v1.20 on loopback, built offline from Debian's `kubernetes`
# source package: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, a kubelet whose
# pods are containers of the machine's dockerd (built-in dockershim), and kube-proxy (iptables).
#
#   scripts/kube-local.sh fetch    install the build's Debian packages and download the source
#                                  (the apt part of build; nothing to do when done)
#   scripts/kube-local.sh build    build the binaries and cache them (only when missing); a
#                                  second build waits for a running one and then finds them
#   scripts/kube-local.sh start    build if needed, start the cluster, wait until the node is Ready;
#                                  the last line printed is `export KUBECONFIG=<path>`
#   scripts/kube-local.sh status   exit 0 when the cluster answers, 1 otherwise
#   scripts/kube-local.sh stop     stop everything, remove the pods' containers, the iptables rules
#                                  and the cluster's state, restore net.ipv4.conf.all.route_localnet
#   scripts/kube-local.sh use PID  start, and record process PID as a holder of the cluster
#   scripts/kube-local.sh release PID
#                                  PID no longer holds it; when no live holder is left and a `use`
#                                  had to start the cluster, stop it (test sessions running side by
#                                  side share one cluster, and the last one out stops it)
#
# Needs root and a running Docker engine (`bash scripts/ensure-docker.sh`). Everything it keeps
# lives under $CLIPPER_KUBE_HOME (default ~/.cache/clipper-kube): bin/ (the cached binaries,
# ~300 MB), build/ (source and Go cache, ~2 GB, removable once bin/ is complete), run/ (state).
# docs/kubernetes.md explains the cluster's gaps (no cluster DNS, pods cannot reach the API).
set -euo pipefail

SCRIPTS=$(cd "$(dirname "$0")" && pwd)
HOME_DIR=${CLIPPER_KUBE_HOME:-$HOME/.cache/clipper-kube}
BIN=$HOME_DIR/bin
BUILD=$HOME_DIR/build
RUN=$HOME_DIR/run
NODE=$(hostname)                     # the apiserver reaches the kubelet by this name
PAUSE_IMAGE=k8s.gcr.io/pause:3.2     # the kubelet's default sandbox image name
API=https://127.0.0.1:16443
TOKEN_FILE=$RUN/tokens.csv
KUBECONFIG_PATH=$RUN/kubeconfig
BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy pause)
COMPONENTS=(kube-proxy kubelet kube-scheduler kube-controller-manager kube-apiserver etcd)

log() { echo "[kube-local] $*" >&2; }
die() { log "error: $*"; exit 1; }

need_root() { [ "$(id -u)" -eq 0 ] || die "run as root (the kubelet and kube-proxy need it)"; }

apt_install() { bash "$SCRIPTS/install-system-deps.sh" "$@"; }

binaries_present() {
    for b in "${BINARIES[@]}"; do [ -x "$BIN/$b" ] || return 1; done
}

# ---------------------------------------------------------------------------------------- build

fetch_source() {
    # The machine's deb822 sources, as deb-src, so `apt-get source` finds the kubernetes package.
    local src=/etc/apt/sources.list.d/clipper-kube-src.sources
    if ! apt-get source --print-uris kubernetes >/dev/null 2>&1; then
        sed -e 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources > "$src"
        bash "$SCRIPTS/install-system-deps.sh" --update
    fi
    mkdir -p "$BUILD"
    if ! ls -d "$BUILD"/kubernetes-1.20.*/ >/dev/null 2>&1; then
        log "downloading Debian's kubernetes source package"
        (cd "$BUILD" && apt-get source --download-only -qq kubernetes >/dev/null)
        log "unpacking the source"
        (cd "$BUILD" && tar xzf kubernetes_*.orig.tar.gz)
    fi
}

patch_source() {
    local k=$1
    # Go >= 1.18 with the vendored reflect2 1.0.1 makes the apiserver crash (SIGSEGV in
    # mapiterinit): use Debian's reflect2 1.0.2 instead.
    if [ ! -f "$k/vendor/github.com/modern-go/reflect2/.debian-1.0.2" ]; then
        rm -rf "$k/vendor/github.com/modern-go/reflect2"
        cp -r /usr/share/gocode/src/github.com/modern-go/reflect2 "$k/vendor/github.com/modern-go/reflect2"
        rm -f "$k"/vendor/github.com/modern-go/reflect2/*_test.go
        touch "$k/vendor/github.com/modern-go/reflect2/.debian-1.0.2"
    fi
    # Without CAP_SYS_RESOURCE runc cannot set a negative oom_score_adj, so every pod sandbox
    # (-998) and Guaranteed container (-997) fails to start: make both 0.
    sed -i 's/^\tdefaultSandboxOOMAdj int = -998$/\tdefaultSandboxOOMAdj int = 0 \/\/ clipper: no CAP_SYS_RESOURCE/' \
        "$k/pkg/kubelet/dockershim/docker_sandbox.go"
    sed -i 's/^\t\treturn guaranteedOOMScoreAdj$/\t\treturn 0 \/\/ clipper: no CAP_SYS_RESOURCE/' "$k/pkg/kubelet/qos/policy.go"
    grep -q 'defaultSandboxOOMAdj int = 0' "$k/pkg/kubelet/dockershim/docker_sandbox.go" || die "the sandbox OOM patch did not apply"
}

fetch() {
    need_root
    binaries_present && return 0
    apt_install etcd-server golang-go dpkg-dev jq rsync openssl curl gcc libc6-dev conntrack iptables \
        golang-github-modern-go-reflect2-dev
    fetch_source
}

build() {
    need_root
    mkdir -p "$HOME_DIR"
    exec 9>"$HOME_DIR/build.lock"
    flock 9   # one build at a time (scripts/test-all.sh may run one in the background)
    compile
    exec 9>&-  # releases the lock, which the daemons `start` launches must not inherit
}

compile() {
    if binaries_present; then log "binaries are cached in $BIN"; return 0; fi
    fetch
    local src; src=$(ls -d "$BUILD"/kubernetes-1.20.*/ | head -1); src=${src%/}
    patch_source "$src"
    # pkg/generated/openapi is not in the tarball.
    if [ ! -f "$src/pkg/generated/openapi/zz_generated.openapi.go" ]; then
        log "generating the OpenAPI definitions (about a minute)"
        (cd "$src" && env HOME="$BUILD" GOCACHE="$BUILD/gocache" CGO_ENABLED=0 make gen_openapi >"$BUILD/gen_openapi.log" 2>&1) \
            || die "make gen_openapi failed; see $BUILD/gen_openapi.log"
    fi
    # GOPATH mode; the version ldflags name the vendored package paths or the server says v0.0.0.
    mkdir -p "$BUILD/gopath/src/k8s.io" "$BIN"
    ln -sfn "$src" "$BUILD/gopath/src/k8s.io/kubernetes"
    local ldflags="-s -w" pkg
    for pkg in k8s.io/kubernetes/vendor/k8s.io/component-base/version k8s.io/kubernetes/vendor/k8s.io/client-go/pkg/version; do
        ldflags+=" -X $pkg.gitVersion=v1.20.2 -X $pkg.gitMajor=1 -X $pkg.gitMinor=20 -X $pkg.gitTreeState=clean"
        ldflags+=" -X $pkg.buildDate=2021-01-13T00:00:00Z"
    done
    log "compiling kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy (about 5 minutes of CPU)"
    (cd "$BUILD/gopath/src/k8s.io/kubernetes" && env GO111MODULE=off GOPATH="$BUILD/gopath" GOCACHE="$BUILD/gocache" \
        CGO_ENABLED=0 go build -ldflags "$ldflags" -o "$BIN/" \
        k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
        k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy \
        >"$BUILD/go-build.log" 2>&1) || die "go build failed; see $BUILD/go-build.log"
    gcc -Os -static -DVERSION=v3.2-clipper -o "$BIN/pause.tmp" "$src/build/pause/linux/pause.c"
    strip "$BIN/pause.tmp" && mv "$BIN/pause.tmp" "$BIN/pause"
    log "binaries are in $BIN"
}

# ---------------------------------------------------------------------------------------- start

own_pid() {  # own_pid NAME: print the pid in run/NAME.pid if that process is still NAME's binary
    # A pid file can outlive its process (a killed session, a reboot) and pids are reused once
    # pid_max (32768 here) wraps, so the pid alone may name someone else's process.
    local pid exe
    [ -f "$RUN/$1.pid" ] || return 1
    pid=$(cat "$RUN/$1.pid")
    exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
    exe=${exe% (deleted)}
    [ "${exe##*/}" = "$1" ] && echo "$pid"
}

alive() { own_pid "$1" >/dev/null; }

launch() {  # launch NAME COMMAND...: run in the background unless already alive; log to run/NAME.log
    local name=$1; shift
    if alive "$name"; then return 0; fi
    log "starting $name (log: $RUN/$name.log)"
    setsid "$@" >"$RUN/$name.log" 2>&1 </dev/null 8>&- &  # not the holders' lock (fd 8)
    echo $! >"$RUN/$name.pid"
}

wait_for() {  # wait_for WHAT SECONDS LOG COMMAND...: on timeout, show the end of run/LOG.log
    local what=$1 seconds=$2 log=$3; shift 3
    local deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        if [ $SECONDS -ge $deadline ]; then
            log "the last lines of $RUN/$log.log:"
            tail -n 15 "$RUN/$log.log" >&2 || true
            die "$what not ready after ${seconds}s; see the logs in $RUN"
        fi
        sleep 0.5
    done
}

api_get() { curl -sf -m 3 --cacert "$RUN/certs/apiserver.crt" -H "Authorization: Bearer $(cut -d, -f1 "$TOKEN_FILE")" "$API$1"; }

node_ready() {
    api_get "/api/v1/nodes/$NODE" | jq -e '.status.conditions[] | select(.type == "Ready") | .status == "True"' | grep -q true
}

pause_image() {
    docker image inspect "$PAUSE_IMAGE" >/dev/null 2>&1 && return 0
    log "building the $PAUSE_IMAGE image from the cached pause binary"
    local root; root=$(mktemp -d)
    cp "$BIN/pause" "$root/pause"
    tar -C "$root" -cf - . | docker import -c 'ENTRYPOINT ["/pause"]' - "$PAUSE_IMAGE" >/dev/null
    rm -rf "$root"
}

write_kubeconfig() {
    cat >"$KUBECONFIG_PATH.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: clipper-local
  cluster: {server: "$API", certificate-authority: "$RUN/certs/apiserver.crt"}
users:
- name: admin
  user: {token: "$(cut -d, -f1 "$TOKEN_FILE")"}
contexts:
- name: clipper-local
  context: {cluster: clipper-local, user: admin}
current-context: clipper-local
EOF
    mv "$KUBECONFIG_PATH.tmp" "$KUBECONFIG_PATH"
}

start() {
    need_root
    docker info >/dev/null 2>&1 || die "the Docker engine does not answer: run 'bash scripts/ensure-docker.sh' first"
    binaries_present || build
    command -v etcd >/dev/null || apt_install etcd-server
    getent hosts "$NODE" | grep -q '^127\.' || die "the hostname $NODE must resolve to a loopback address (/etc/hosts)"
    mkdir -p "$RUN/certs" "$RUN/manifests"
    if [ ! -f "$RUN/sa.key" ]; then
        openssl genrsa -out "$RUN/sa.key" 2048 2>/dev/null
        openssl rsa -in "$RUN/sa.key" -pubout -out "$RUN/sa.pub" 2>/dev/null
    fi
    [ -f "$TOKEN_FILE" ] || echo "$(openssl rand -hex 16),admin,admin,system:masters" >"$TOKEN_FILE"
    [ -f "$RUN/route_localnet.before" ] || sysctl -n net.ipv4.conf.all.route_localnet >"$RUN/route_localnet.before"
    pause_image

    launch etcd etcd --name clipper --data-dir "$RUN/etcd" \
        --listen-client-urls http://127.0.0.1:12379 --advertise-client-urls http://127.0.0.1:12379 \
        --listen-peer-urls http://127.0.0.1:12380 --initial-advertise-peer-urls http://127.0.0.1:12380 \
        --initial-cluster clipper=http://127.0.0.1:12380
    launch kube-apiserver "$BIN/kube-apiserver" --etcd-servers=http://127.0.0.1:12379 \
        --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port=16443 --cert-dir="$RUN/certs" \
        --token-auth-file="$TOKEN_FILE" --authorization-mode=RBAC \
        --service-account-issuer=https://kubernetes.default.svc.cluster.local \
        --service-account-key-file="$RUN/sa.pub" --service-account-signing-key-file="$RUN/sa.key" \
        --service-cluster-ip-range=10.96.0.0/16 --service-node-port-range=30000-32767 \
        --kubelet-preferred-address-types=Hostname,InternalIP,ExternalIP \
        --endpoint-reconciler-type=none --enable-priority-and-fairness=false --profiling=false
    wait_for "kube-apiserver" 90 kube-apiserver bash -c "[ -f '$RUN/certs/apiserver.crt' ] && curl -sf -m 2 --cacert '$RUN/certs/apiserver.crt' $API/readyz"
    write_kubeconfig
    launch kube-controller-manager "$BIN/kube-controller-manager" --kubeconfig="$KUBECONFIG_PATH" \
        --bind-address=127.0.0.1 --secure-port=16444 --leader-elect=false \
        --service-account-private-key-file="$RUN/sa.key" --root-ca-file="$RUN/certs/apiserver.crt"
    launch kube-scheduler "$BIN/kube-scheduler" --kubeconfig="$KUBECONFIG_PATH" \
        --bind-address=127.0.0.1 --secure-port=16445 --leader-elect=false
    # Image GC and eviction are neutralised: this kubelet shares the dockerd with other users and
    # must never delete images it did not create.
    launch kubelet "$BIN/kubelet" --kubeconfig="$KUBECONFIG_PATH" --hostname-override="$NODE" \
        --container-runtime=docker --docker-endpoint=unix:///var/run/docker.sock \
        --pod-infra-container-image="$PAUSE_IMAGE" --cgroup-driver="$(docker info --format '{{.CgroupDriver}}')" \
        --fail-swap-on=false --root-dir="$RUN/kubelet" --cert-dir="$RUN/kubelet-pki" --pod-manifest-path="$RUN/manifests" \
        --address=127.0.0.1 --port=10250 --read-only-port=0 --healthz-bind-address=127.0.0.1 --healthz-port=10248 \
        --image-gc-high-threshold=100 --image-gc-low-threshold=99 \
        --eviction-hard='memory.available<1Mi,nodefs.available<1%,imagefs.available<1%' \
        --serialize-image-pulls=false --register-node=true
    # NodePorts answer on 127.0.0.1 (kube-proxy sets route_localnet=1; stop restores it).
    launch kube-proxy "$BIN/kube-proxy" --kubeconfig="$KUBECONFIG_PATH" --hostname-override="$NODE" \
        --proxy-mode=iptables --bind-address=127.0.0.1 --healthz-bind-address=127.0.0.1:10256 \
        --metrics-bind-address=127.0.0.1:10249 --cluster-cidr=172.17.0.0/16 --nodeport-addresses=127.0.0.0/8 \
        --conntrack-max-per-core=0
    log "waiting for node $NODE to be Ready"
    wait_for "node $NODE" 120 kubelet node_ready
    log "cluster is up (kubectl: --kubeconfig $KUBECONFIG_PATH)"
    echo "export KUBECONFIG=$KUBECONFIG_PATH"
}

status() {
    [ -f "$TOKEN_FILE" ] && alive kube-apiserver && alive kubelet && alive kube-proxy && node_ready
}

# ---------------------------------------------------------------------------------------- stop

stop() {
    need_root
    local c pid
    for c in "${COMPONENTS[@]}"; do
        if pid=$(own_pid "$c"); then log "stopping $c"; kill "$pid" 2>/dev/null || true; fi
    done
    for c in "${COMPONENTS[@]}"; do
        for _ in $(seq 20); do alive "$c" || break; sleep 0.25; done
        if pid=$(own_pid "$c"); then kill -9 "$pid" 2>/dev/null || true; fi
        rm -f "$RUN/$c.pid"
    done
    # The containers of pods: dockershim labels every one it creates with the pod's namespace.
    local ids; ids=$(docker ps -aq --filter label=io.kubernetes.pod.namespace 2>/dev/null || true)
    if [ -n "$ids" ]; then log "removing $(echo "$ids" | wc -w) pod containers"; docker rm -f $ids >/dev/null || true; fi
    if [ -x "$BIN/kube-proxy" ]; then "$BIN/kube-proxy" --cleanup >/dev/null 2>&1 || true; fi
    # Chains the kubelet adds (kube-proxy --cleanup leaves them).
    local table chain rule
    for table in filter nat mangle; do
        for chain in KUBE-FIREWALL KUBE-KUBELET-CANARY KUBE-PROXY-CANARY KUBE-MARK-DROP KUBE-MARK-MASQ KUBE-POSTROUTING; do
            { iptables -t "$table" -S 2>/dev/null | grep -E -- "-j $chain( |$)" | sed 's/^-A /-D /' || true; } |
                while read -r rule; do eval iptables -t "$table" "$rule" || true; done
            iptables -t "$table" -F "$chain" 2>/dev/null && iptables -t "$table" -X "$chain" 2>/dev/null || true
        done
    done
    if [ -f "$RUN/route_localnet.before" ]; then
        sysctl -qw net.ipv4.conf.all.route_localnet="$(cat "$RUN/route_localnet.before")" || true
        rm -f "$RUN/route_localnet.before"
    fi
    # The kubelet mounts volumes below its root dir (and may bind-mount the dir on itself).
    if [ -d "$RUN/kubelet" ]; then
        mount | awk -v d="$RUN/kubelet" '$3 == d || index($3, d "/") == 1 {print $3}' | sort -r | while read -r m; do
            umount "$m" 2>/dev/null || umount -l "$m" || true
        done
    fi
    local d; for d in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
        [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    done
    rm -rf "$RUN/etcd" "$RUN/kubelet" "$RUN/kubelet-pki" "$RUN/kubeconfig" "$RUN/holders"
    log "cluster stopped and its state removed"
}

# -------------------------------------------------------------------------------------- holders
# run/holders/<pid> holds the start time of the process that `use`d the cluster (a pid alone may be
# reused); run/holders/.stop-on-release says a `use` started the cluster. Both commands run under
# run/holders.lock, so a release cannot stop the cluster while a use starts or joins it.

started_at() {  # started_at PID: the process's start time (field 22 of /proc/PID/stat)
    local stat; stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }   # the fields after "pid (comm) "; comm may hold spaces
    # shellcheck disable=SC2086
    set -- $stat
    echo "${20}"
}

live_holder() { [ "$(cat "$RUN/holders/$1" 2>/dev/null)" = "$(started_at "$1")" ]; }

lock_holders() { mkdir -p "$RUN/holders"; exec 8>"$RUN/holders.lock"; flock 8; }

use() {
    need_root
    local pid=${1:?usage: $0 use PID}
    started_at "$pid" >/dev/null || die "no process $pid to hold the cluster"
    lock_holders
    if ! status; then touch "$RUN/holders/.stop-on-release"; fi
    start
    started_at "$pid" >"$RUN/holders/$pid"
}

release() {
    need_root
    local pid=${1:?usage: $0 release PID} f others=0
    lock_holders
    rm -f "$RUN/holders/$pid"
    for f in "$RUN"/holders/*; do
        [ -e "$f" ] || continue
        if live_holder "${f##*/}"; then others=$((others + 1)); else rm -f "$f"; fi
    done
    if [ "$others" -gt 0 ]; then
        log "the cluster stays up: $others other process(es) hold it"
    elif [ -f "$RUN/holders/.stop-on-release" ]; then
        stop
    else
        log "no use started the cluster: left as it is"
    fi
}

case "${1:-}" in
    fetch) fetch ;;
    build) build ;;
    start) start ;;
    status) status ;;
    stop) stop ;;
    use) use "${2:-}" ;;
    release) release "${2:-}" ;;
    *) echo "usage: $0 fetch|build|start|status|stop|use PID|release PID" >&2; exit 2 ;;
esac
