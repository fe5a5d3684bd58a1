# Shared settings and helpers for lab/up, lab/down and lab/reset. Source it; do not run it.
set -euo pipefail

LAB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
RUN_DIR=$LAB_DIR/run
# Keys, sshd configs and passwords live outside the checkout: sshd reads authorized keys as the login user,
# who cannot enter a checkout in a 0700 home (/root) or a mktemp -d folder.
KEYS_DIR=/var/lib/remediate-lab
CACHE_DIR=/var/cache/remediate-lab
STATE_DIR=/run/remediate-lab
DOCKERD_PID=$STATE_DIR/dockerd.pid
SSH_PORT=2222
EC2_ADDR=127.0.0.10
DELL_ADDR=127.0.0.11
HARD_ADDR=127.0.0.12
RELAY_ADDR=127.0.0.13
EC2_COMPOSE_DIR=/opt/mailserver
DELL_COMPOSE_DIR=/opt/mailbox
HARD_COMPOSE_DIR=/opt/mailserver-hardened
ENVFILE_COMPOSE_DIR=/opt/mailserver-envfile
RELAY_COMPOSE_DIR=/opt/mailserver-relay
LAB_USER=ops
HARD_USER=ops-hard
HARD_PASSWORD_FILE=$KEYS_DIR/$HARD_USER.password
BASE_IMAGE=remediate-lab/base:bookworm
PACKAGES=(docker.io docker-compose debootstrap openssh-server openssh-client sudo iproute2 curl
          prometheus prometheus-alertmanager prometheus-postfix-exporter)
BASE_INCLUDE=postfix,dovecot-core,dovecot-lmtpd,procps
export DOCKER_BUILDKIT=0 COMPOSE_DOCKER_CLI_BUILD=0

say() { printf '[lab %5ss] %s\n' "$SECONDS" "$*"; }

progress() {  # pid what log: wait for a background job, saying every 5 s what it is doing; its exit status
    local pid=$1 what=$2 log=$3 ticks=0
    while kill -0 "$pid" 2>/dev/null; do
        sleep 1
        ticks=$((ticks + 1))
        if [ $((ticks % 5)) -eq 0 ]; then say "$what still running: $(tail -n 1 "$log" 2>/dev/null | cut -c1-100)"; fi
    done
    wait "$pid"
}
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

LAB_ADDRS=("$EC2_ADDR" "$DELL_ADDR" "$HARD_ADDR" "$RELAY_ADDR")

add_addresses() {
    for addr in "${LAB_ADDRS[@]}"; do
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
                >"$CACHE_DIR/debootstrap.log" 2>&1 &
            progress $! "debootstrap" "$CACHE_DIR/debootstrap.log" || die "debootstrap failed; see $CACHE_DIR/debootstrap.log"
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

ensure_user() {  # name
    id "$1" >/dev/null 2>&1 || useradd --create-home --shell /bin/sh "$1"
}

setup_users() {
    ensure_user "$LAB_USER"
    usermod -p '*' "$LAB_USER"   # no password, but not locked
    printf '%s ALL=(ALL) NOPASSWD: ALL\n' "$LAB_USER" > /etc/sudoers.d/remediate-lab
    chmod 0440 /etc/sudoers.d/remediate-lab
    # The hardened host's user: a password, and sudo for what the playbook runs only. sh asks for the
    # password (remediate's scripts run as `sh -c`); docker and docker-compose are NOPASSWD, as is common.
    ensure_user "$HARD_USER"
    if [ ! -s "$HARD_PASSWORD_FILE" ]; then
        (umask 077; head -c 18 /dev/urandom | base64 | tr -d '/+=' > "$HARD_PASSWORD_FILE")
    fi
    printf '%s:%s\n' "$HARD_USER" "$(cat "$HARD_PASSWORD_FILE")" | chpasswd
    cat > /etc/sudoers.d/remediate-lab-hardened <<SUDO
Defaults:$HARD_USER !lecture
$HARD_USER ALL=(root) /usr/bin/sh, /bin/sh
$HARD_USER ALL=(root) NOPASSWD: $(command -v docker), $(command -v docker-compose)
SUDO
    chmod 0440 /etc/sudoers.d/remediate-lab-hardened
    visudo -cq || die "the lab's sudoers files do not parse"
}

sshd_pidfile() { echo "$KEYS_DIR/$1/sshd.pid"; }

start_sshd() {  # name address user [hardened]
    local name=$1 addr=$2 user=$3 hardened=${4:-} dir=$KEYS_DIR/$1
    mkdir -p "$dir" /run/sshd
    [ -f "$dir/ssh_host_ed25519_key" ] || ssh-keygen -q -t ed25519 -N '' -C "$name" -f "$dir/ssh_host_ed25519_key"
    cat > "$dir/sshd_config" <<CONF
ListenAddress $addr:$SSH_PORT
HostKey $dir/ssh_host_ed25519_key
PidFile $dir/sshd.pid
AuthorizedKeysFile $KEYS_DIR/authorized_keys
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin no
AllowUsers $user
MaxSessions 64
MaxStartups 64
Subsystem sftp internal-sftp
CONF
    if [ -n "$hardened" ]; then
        printf '%s\n' "AllowTcpForwarding no" "PermitOpen none" "AllowAgentForwarding no" \
            "AllowStreamLocalForwarding no" "X11Forwarding no" "PermitTunnel no" >> "$dir/sshd_config"
    fi
    /usr/sbin/sshd -t -f "$dir/sshd_config" || die "sshd_config of $name does not parse"
    if [ -f "$dir/sshd.pid" ] && kill -0 "$(cat "$dir/sshd.pid")" 2>/dev/null; then
        kill -HUP "$(cat "$dir/sshd.pid")"   # re-read the config, in case it changed
        return
    fi
    /usr/sbin/sshd -f "$dir/sshd_config" -E "$dir/sshd.log"
}

setup_ssh() {
    install -d -m 0755 "$KEYS_DIR"
    setup_users
    [ -f "$KEYS_DIR/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C remediate-lab -f "$KEYS_DIR/id_ed25519"
    install -m 0644 "$KEYS_DIR/id_ed25519.pub" "$KEYS_DIR/authorized_keys"
    start_sshd ec2-mx "$EC2_ADDR" "$LAB_USER"
    start_sshd dell "$DELL_ADDR" "$LAB_USER"
    start_sshd ec2-mx-hardened "$HARD_ADDR" "$HARD_USER" hardened
    {
        for pair in "ec2-mx $EC2_ADDR" "dell $DELL_ADDR" "ec2-mx-hardened $HARD_ADDR"; do
            set -- $pair
            printf '[%s]:%s %s\n' "$2" "$SSH_PORT" "$(cut -d' ' -f1,2 "$KEYS_DIR/$1/ssh_host_ed25519_key.pub")"
        done
    } > "$KEYS_DIR/known_hosts"
}

check_logins() {  # log in to each host as the inventory does, and run what remediate runs first
    local pair name addr user
    for pair in "ec2-mx $EC2_ADDR $LAB_USER" "dell $DELL_ADDR $LAB_USER" "ec2-mx-hardened $HARD_ADDR $HARD_USER"; do
        set -- $pair
        name=$1 addr=$2 user=$3
        ssh -q -F /dev/null -i "$KEYS_DIR/id_ed25519" -o IdentitiesOnly=yes -o BatchMode=yes \
            -o UserKnownHostsFile="$KEYS_DIR/known_hosts" -o StrictHostKeyChecking=yes -o ConnectTimeout=5 \
            -p "$SSH_PORT" "$user@$addr" 'sudo -n docker version --format "{{.Server.Version}}"' >/dev/null 2>"$STATE_DIR/login-$name.log" \
            || die "cannot log in to $name ($user@$addr:$SSH_PORT) and run docker through sudo: $(tail -2 "$STATE_DIR/login-$name.log" | tr '\n' ' ')(sshd log: $KEYS_DIR/$name/sshd.log)"
    done
}

compose() {  # host-name compose args...: run docker-compose for a lab host's project
    local name=$1; shift
    local dir project
    case "$name" in
        ec2-mx) dir=$EC2_COMPOSE_DIR; project=mailserver ;;
        dell) dir=$DELL_COMPOSE_DIR; project=mailbox ;;
        ec2-mx-hardened) dir=$HARD_COMPOSE_DIR; project=mailserver-hardened ;;
        ec2-mx-envfile) dir=$ENVFILE_COMPOSE_DIR; project=mailserver-envfile ;;
        ec2-mx-relay) dir=$RELAY_COMPOSE_DIR; project=mailserver-relay ;;
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
    for name in ec2-mx ec2-mx-hardened ec2-mx-envfile ec2-mx-relay dell; do
        compose "$name" down -v --remove-orphans >/dev/null 2>&1 || true
    done
    docker rm -f -v mailserver-postfix mailserver-postfix-hardened mailserver-postfix-envfile mailserver-postfix-relay \
        mailserver-dovecot >/dev/null 2>&1 || true
    rm -rf "$EC2_COMPOSE_DIR" "$DELL_COMPOSE_DIR" "$HARD_COMPOSE_DIR" "$ENVFILE_COMPOSE_DIR" "$RELAY_COMPOSE_DIR" /var/lib/remediate
    install -d -m 0755 "$EC2_COMPOSE_DIR" "$DELL_COMPOSE_DIR" "$HARD_COMPOSE_DIR" "$ENVFILE_COMPOSE_DIR" "$RELAY_COMPOSE_DIR"
    install -m 0644 "$LAB_DIR/hosts/ec2-mx/docker-compose.yml" "$EC2_COMPOSE_DIR/docker-compose.yml"
    install -m 0644 "$LAB_DIR/hosts/dell/docker-compose.yml" "$DELL_COMPOSE_DIR/docker-compose.yml"
    install -m 0644 "$LAB_DIR/hosts/ec2-mx-hardened/docker-compose.yml" "$HARD_COMPOSE_DIR/docker-compose.yml"
    install -m 0644 "$LAB_DIR/hosts/ec2-mx-envfile/docker-compose.yml" "$LAB_DIR/hosts/ec2-mx-envfile/relay.env" \
        "$ENVFILE_COMPOSE_DIR/"
    install -m 0644 "$LAB_DIR/hosts/ec2-mx-relay/docker-compose.yml" "$RELAY_COMPOSE_DIR/docker-compose.yml"
    mkdir -p "$RUN_DIR"
    install -m 0644 "$LAB_DIR/iac/user_data.sh" "$RUN_DIR/user_data.sh"
    for pair in "dell mailserver-dovecot" "ec2-mx mailserver-postfix" "ec2-mx-hardened mailserver-postfix-hardened"; do
        set -- $pair
        compose "$1" up -d >/dev/null 2>&1 || die "could not start $2: $(compose "$1" up -d 2>&1 | tail -3)"
    done
    wait_port "$DELL_ADDR" 2525 "Dovecot LMTP"
    wait_port "$EC2_ADDR" 25 "Postfix"
    wait_port "$HARD_ADDR" 25 "Postfix (hardened)"
}
