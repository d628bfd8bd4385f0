#!/bin/sh
# Runs in the installer DaemonSet's container with the host's / at /host: copies ocivol and its
# config and runtime handler drop-in onto the node, restarts the node's engine, and keeps
# `ocivol gc` running: the node's systemd timer where the node runs systemd, else a loop here.
set -eu
H=/host
install -D -m 0755 /opt/ocivol/bin/ocivol "$H/usr/local/bin/ocivol"
ln -sf ocivol "$H/usr/local/bin/ocivol-runtime"
[ -e "$H/etc/ocivol/config.json" ] || install -D -m 0644 /opt/ocivol/config.json "$H/etc/ocivol/config.json"
engine=${OCIVOL_ENGINE:-auto}
if [ "$engine" = auto ]; then
  if [ -S "$H/run/containerd/containerd.sock" ]; then engine=containerd
  elif [ -S "$H/var/run/crio/crio.sock" ]; then engine=crio
  else echo "ocivol: no containerd or CRI-O socket on this node; set OCIVOL_ENGINE" >&2; exit 1; fi
fi
case "$engine" in
  containerd)
    cfg="$H/etc/containerd/config.toml"
    if ! grep -q 'runtimes.ocivol\]' "$cfg" 2>/dev/null; then
      # An imported file would replace the whole CRI table of config.toml (containerd 1.6):
      # merge the tables into it instead. A config with its own runtimes.runc keeps it.
      if [ -e "$cfg" ] && grep -q 'runtimes.runc\]' "$cfg"; then
        sed -n '/runtimes.ocivol\]/,$p' /opt/ocivol/containerd/ocivol.toml >> "$cfg"
      else
        [ -e "$cfg" ] || echo 'version = 2' > "$cfg"
        grep -v '^version' /opt/ocivol/containerd/ocivol.toml >> "$cfg"
      fi
    fi
    nsenter -t 1 -m -u -i -n -p -- systemctl restart containerd ;;
  crio)
    install -D -m 0644 /opt/ocivol/crio/99-ocivol.conf "$H/etc/crio/crio.conf.d/99-ocivol.conf"
    nsenter -t 1 -m -u -i -n -p -- systemctl restart crio ;;
  *) echo "ocivol: unknown OCIVOL_ENGINE $engine" >&2; exit 1 ;;
esac
if [ -d "$H/run/systemd/system" ]; then
  # The gc timer releases what killed shims and crashed containers left (README, "Crash
  # recovery"). It reads the roots from /etc/ocivol/config.json, as the engine's ocivol does.
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
