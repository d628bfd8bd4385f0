#!/bin/sh
# Runs in the installer DaemonSet's container with the host's / at /host: copies ocivol and its
# config onto the node, runs `ocivol setup containerd` (or crio) there to give the engine the
# ocivol runtime handler, restarts the engine if that changed its config, and keeps
# `ocivol gc` running: the node's systemd timer where the node runs systemd, else a loop here.
set -eu
H=/host
install -D -m 0755 /opt/ocivol/bin/ocivol "$H/usr/local/bin/ocivol"
ln -sf ocivol "$H/usr/local/bin/ocivol-runtime"
# The node's config is kept. One in the JSON format of older releases (config.json, no longer
# read) is converted into config.toml, and kept beside it as config.json.old.
C="$H/etc/ocivol"
if [ ! -e "$C/config.toml" ]; then
  if [ -e "$C/config.json" ]; then
    chroot "$H" /usr/local/bin/ocivol config --convert /etc/ocivol/config.json > "$C/config.toml.new"
    chmod 0644 "$C/config.toml.new"
    mv "$C/config.toml.new" "$C/config.toml"
    mv "$C/config.json" "$C/config.json.old"
    echo "ocivol: converted /etc/ocivol/config.json into /etc/ocivol/config.toml (old file: config.json.old)"
  else
    install -D -m 0644 /opt/ocivol/config.toml "$C/config.toml"
  fi
fi
engine=${OCIVOL_ENGINE:-auto}
if [ "$engine" = auto ]; then
  if [ -S "$H/run/containerd/containerd.sock" ]; then engine=containerd
  elif [ -S "$H/var/run/crio/crio.sock" ]; then engine=crio
  else echo "ocivol: no containerd or CRI-O socket on this node; set OCIVOL_ENGINE" >&2; exit 1; fi
fi
# `ocivol setup` edits the node's own engine config in place (comments and every other
# handler kept, runc's options copied to the ocivol handler, the layout of the file's own
# config version), and refuses, with one line saying what to do by hand, a config it cannot
# change safely: the pod then fails with that line in its log. It changes nothing when the
# handler is already there, so the engine is restarted only when the file changed.
case "$engine" in
  containerd|crio)
    out=$(chroot "$H" /usr/local/bin/ocivol setup "$engine")
    echo "$out"
    case "$out" in
      *": updated"*|*": created"*) nsenter -t 1 -m -u -i -n -p -- systemctl restart "$engine" ;;
    esac ;;
  *) echo "ocivol: unknown OCIVOL_ENGINE $engine" >&2; exit 1 ;;
esac
if [ -d "$H/run/systemd/system" ]; then
  # The gc timer releases what killed shims and crashed containers left (README, "Crash
  # recovery"). It reads the roots from /etc/ocivol/config.toml, as the engine's ocivol does.
  for u in ocivol-gc.service ocivol-gc.timer; do
    install -D -m 0644 "/opt/ocivol/systemd/$u" "$H/etc/systemd/system/$u"
  done
  nsenter -t 1 -m -u -i -n -p -- systemctl daemon-reload
  nsenter -t 1 -m -u -i -n -p -- systemctl enable --now ocivol-gc.timer
  echo "ocivol installed for $engine, gc timer enabled"
  exec sleep infinity
fi
echo "ocivol installed for $engine; no systemd on the node: running gc every 15 minutes from here"
while sleep 900; do
  chroot "$H" /usr/local/bin/ocivol gc || echo "ocivol gc failed (exit $?)" >&2
done
