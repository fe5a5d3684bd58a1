# Shared settings and helpers for lab/up, lab/down and lab/reset. Source it; do not run it.
set -euo pipefail

LAB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
RUN_DIR=$LAB_DIR/run
CACHE_DIR=/var/cache/remediate-lab
STATE_DIR=/run/remediate-lab
DOCKERD_PID=$STATE_DIR/dockerd.pid
SSH_PORT=2222
EC2_ADDR=127.0.0.10
DELL_ADDR=127.0.0.11
EC2_COMPOSE_DIR=/opt/mailserver
DELL_COMPOSE_DIR=/opt/mailbox
LAB_USER=ops
BASE_IMAGE=remediate-lab/base:bookworm
PACKAGES=(docker.io docker-compose debootstrap openssh-server openssh-client sudo iproute2)
BASE_INCLUDE=postfix,dovecot-core,dovecot-lmtpd,procps
export DOCKER_BUILDKIT=0 COMPOSE_DOCKER_CLI_BUILD=0

say() { printf '[lab %5ss] %s\n' "$SECONDS" "$*"; }
die() { printf 'lab: %s\n' "$*" >&2; exit 1; }

need_root() { [ "$(id -u)" = 0 ] || die "run the lab as root (it starts dockerd and sshd, and adds loopback addresses)"; }

install_packages() {
    local missing=()
    for p in "${PACKAGES[@]}"; do
        [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        say "installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

add_addresses() {
    for addr in "$EC2_ADDR" "$DELL_ADDR"; do
        # (a here-string, not a pipe: under pipefail, grep -q closing early fails the pipeline)
        grep -q "inet $addr/" <<< "$(ip addr show dev lo)" || ip addr add "$addr/32" dev lo
    done
}

dockerd_running() { [ -f "$DOCKERD_PID" ] && kill -0 "$(cat "$DOCKERD_PID")" 2>/dev/null; }

start_dockerd() {
    mkdir -p "$STATE_DIR"
    if docker info >/dev/null 2>&1; then return; fi
    say "starting dockerd (no bridge, no iptables)"
    setsid dockerd --bridge=none --iptables=false --ip-forward=false --ip-masq=false \
        --pidfile "$DOCKERD_PID" >"$STATE_DIR/dockerd.log" 2>&1 < /dev/null &
    for _ in $(seq 1 150); do
        docker info >/dev/null 2>&1 && return
        sleep 0.2
    done
    die "dockerd did not start; see $STATE_DIR/dockerd.log"
}

debian_mirror() {
    local uri
    uri=$(awk '$1=="URIs:" && $0 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    [ -n "$uri" ] || uri=$(awk '$1=="deb" && $0 !~ /security/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
    echo "${uri:-http://deb.debian.org/debian}"
}

build_images() {
    if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
        if [ ! -f "$CACHE_DIR/rootfs.done" ]; then
            say "debootstrap bookworm ($BASE_INCLUDE) from $(debian_mirror)"
            rm -rf "$CACHE_DIR/rootfs"
            mkdir -p "$CACHE_DIR"
            debootstrap --variant=minbase --include="$BASE_INCLUDE" bookworm "$CACHE_DIR/rootfs" "$(debian_mirror)" \
                >"$CACHE_DIR/debootstrap.log" 2>&1 || die "debootstrap failed; see $CACHE_DIR/debootstrap.log"
            rm -rf "$CACHE_DIR"/rootfs/var/cache/apt/archives/*.deb
            touch "$CACHE_DIR/rootfs.done"
        fi
        say "importing $BASE_IMAGE"
        tar -C "$CACHE_DIR/rootfs" -c . | docker import - "$BASE_IMAGE" >/dev/null
    fi
    for image in postfix dovecot; do
        say "building remediate-lab/$image"
        docker build -q --network host -t "remediate-lab/$image:latest" "$LAB_DIR/images/$image" \
            >"$STATE_DIR/build-$image.log" 2>&1 || die "building remediate-lab/$image failed; see $STATE_DIR/build-$image.log"
    done
}

ensure_user() {
    id "$LAB_USER" >/dev/null 2>&1 || useradd --create-home --shell /bin/sh "$LAB_USER"
    usermod -p '*' "$LAB_USER"   # no password, but not locked
    printf '%s ALL=(ALL) NOPASSWD: ALL\n' "$LAB_USER" > /etc/sudoers.d/remediate-lab
    chmod 0440 /etc/sudoers.d/remediate-lab
}

sshd_pidfile() { echo "$RUN_DIR/$1/sshd.pid"; }

start_sshd() {  # name address
    local name=$1 addr=$2 dir=$RUN_DIR/$1
    mkdir -p "$dir" /run/sshd
    [ -f "$dir/ssh_host_ed25519_key" ] || ssh-keygen -q -t ed25519 -N '' -C "$name" -f "$dir/ssh_host_ed25519_key"
    cat > "$dir/sshd_config" <<CONF
ListenAddress $addr:$SSH_PORT
HostKey $dir/ssh_host_ed25519_key
PidFile $dir/sshd.pid
AuthorizedKeysFile $RUN_DIR/authorized_keys
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin no
AllowUsers $LAB_USER
MaxSessions 64
MaxStartups 64
Subsystem sftp internal-sftp
CONF
    if [ -f "$dir/sshd.pid" ] && kill -0 "$(cat "$dir/sshd.pid")" 2>/dev/null; then return; fi
    /usr/sbin/sshd -f "$dir/sshd_config" -E "$dir/sshd.log"
}

setup_ssh() {
    mkdir -p "$RUN_DIR"
    chmod 0755 "$RUN_DIR"
    ensure_user
    [ -f "$RUN_DIR/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C remediate-lab -f "$RUN_DIR/id_ed25519"
    cp "$RUN_DIR/id_ed25519.pub" "$RUN_DIR/authorized_keys"
    chmod 0644 "$RUN_DIR/authorized_keys"
    start_sshd ec2-mx "$EC2_ADDR"
    start_sshd dell "$DELL_ADDR"
    {
        printf '[%s]:%s %s\n' "$EC2_ADDR" "$SSH_PORT" "$(cut -d' ' -f1,2 "$RUN_DIR/ec2-mx/ssh_host_ed25519_key.pub")"
        printf '[%s]:%s %s\n' "$DELL_ADDR" "$SSH_PORT" "$(cut -d' ' -f1,2 "$RUN_DIR/dell/ssh_host_ed25519_key.pub")"
    } > "$RUN_DIR/known_hosts"
}

compose() {  # host-name compose args...: run docker-compose for a lab host's project
    local name=$1; shift
    local dir project
    case "$name" in
        ec2-mx) dir=$EC2_COMPOSE_DIR; project=mailserver ;;
        dell) dir=$DELL_COMPOSE_DIR; project=mailbox ;;
    esac
    docker-compose --project-directory "$dir" -p "$project" -f "$LAB_DIR/hosts/$name/docker-compose.yml" "$@"
}

wait_port() {  # address port what
    for _ in $(seq 1 300); do
        (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && return
        sleep 0.1
    done
    die "$3 did not listen on $1:$2 within 30 s"
}

reset_state() {
    say "resetting to the incident's broken state"
    compose ec2-mx down -v --remove-orphans >/dev/null 2>&1 || true
    compose dell down -v --remove-orphans >/dev/null 2>&1 || true
    docker rm -f -v mailserver-postfix mailserver-dovecot >/dev/null 2>&1 || true
    rm -rf "$EC2_COMPOSE_DIR" "$DELL_COMPOSE_DIR" /var/lib/remediate
    install -d -m 0755 "$EC2_COMPOSE_DIR" "$DELL_COMPOSE_DIR"
    install -m 0644 "$LAB_DIR/hosts/ec2-mx/docker-compose.yml" "$EC2_COMPOSE_DIR/docker-compose.yml"
    install -m 0644 "$LAB_DIR/hosts/dell/docker-compose.yml" "$DELL_COMPOSE_DIR/docker-compose.yml"
    mkdir -p "$RUN_DIR"
    install -m 0644 "$LAB_DIR/iac/user_data.sh" "$RUN_DIR/user_data.sh"
    compose dell up -d >/dev/null 2>&1 || die "could not start mailserver-dovecot: $(compose dell up -d 2>&1 | tail -3)"
    compose ec2-mx up -d >/dev/null 2>&1 || die "could not start mailserver-postfix: $(compose ec2-mx up -d 2>&1 | tail -3)"
    wait_port "$DELL_ADDR" 2525 "Dovecot LMTP"
    wait_port "$EC2_ADDR" 25 "Postfix"
}
