#!/bin/sh
# The lab's stand-in for boky/postfix's scripts/run.sh: the same environment contract and log lines.
#   RELAYHOST=...            -> relayhost
#   POSTFIX_<key>=<value>    -> postconf -e key=value   (applied last, so they win)
#   POSTFIX_<key>=           -> the setting is deleted
#   ALLOWED_SENDER_DOMAINS / ALLOW_EMPTY_SENDER_DOMAINS=true: one of them is required
set -u
info() { printf '\342\200\243 INFO  %s\n' "$*"; }
error() { printf '\342\200\243 ERROR %s\n' "$*"; }

if [ ! -f /etc/postfix/main.cf ]; then
    info "Seeding /etc/postfix from the image defaults"
    cp -a /etc/postfix.default/. /etc/postfix/
fi

if [ -z "${ALLOWED_SENDER_DOMAINS:-}" ] && [ "${ALLOW_EMPTY_SENDER_DOMAINS:-}" != "true" ]; then
    error "You need to specify ALLOWED_SENDER_DOMAINS otherwise Postfix will not run!"
    exit 1
fi

settings_file=$(mktemp)
deletes=""
if [ -n "${ALLOWED_SENDER_DOMAINS:-}" ]; then
    info "Setting up allowed SENDER domains: ${ALLOWED_SENDER_DOMAINS}"
    access=""
    for domain in ${ALLOWED_SENDER_DOMAINS}; do access="${access}${access:+, }${domain}=OK"; done
    printf '%s\n' "smtpd_sender_restrictions=check_sender_access inline:{ ${access} }, reject" >> "$settings_file"
fi

if [ -n "${RELAYHOST:-}" ]; then
    info "Forwarding all emails to ${RELAYHOST}"
    printf '%s\n' "relayhost=${RELAYHOST}" >> "$settings_file"
else
    info "Postfix is configured to deliver messages directly (without relaying)"
    deletes="relayhost"
fi

# POSTFIX_<key>=<value>, in the environment's order; one line each, values may hold spaces.
env | grep '^POSTFIX_' | while IFS= read -r line; do
    key=${line%%=*}; key=${key#POSTFIX_}; value=${line#*=}
    if [ -z "$value" ]; then
        info "Deleting custom postfix setting: ${key}"
        printf '%s\n' "-X ${key}" >> "$settings_file"
    else
        info "Applying custom postfix setting: ${key}=${value}"
        printf '%s\n' "${key}=${value}" >> "$settings_file"
    fi
done

# All edits in at most two postconf calls: Postfix pauses while main.cf is under a second old.
for key in $deletes $(sed -n 's/^-X //p' "$settings_file"); do deletes_all="${deletes_all:-} $key"; done
if [ -n "${deletes_all:-}" ]; then
    # shellcheck disable=SC2086
    postconf -X ${deletes_all}
fi
set --
while IFS= read -r setting; do
    case "$setting" in -X\ *) ;; *) set -- "$@" "$setting" ;; esac
done < "$settings_file"
rm -f "$settings_file"
[ $# -gt 0 ] && postconf -e "$@"

# A fatal configuration makes start-fg exit silently: say why first.
postfix check || { error "postfix check failed"; exit 1; }
info "Starting: postfix start-fg"
exec postfix start-fg
