#!/bin/sh
# Runs in the installer DaemonSet's container with the host's / at /host: copies ocivol and its
# config and runtime handler drop-in onto the node, then restarts the node's engine.
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
echo "ocivol installed for $engine"
exec sleep infinity
