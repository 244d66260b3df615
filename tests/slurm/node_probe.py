"""The probe of the multi-node tests (+callbacks.probe._target_=node_probe.NodeProbe): train_probe.Probe
(start/end step, W&B id, the restored checkpoint checked tensor by tensor) plus, per rank, the
node it ran on (hostname), the TCP peers its process talks to (the gloo mesh and the rendezvous
store), a fingerprint of every training image, and the losses it logged at every step."""

import hashlib
import ipaddress
import os
import socket
from pathlib import Path

import torch
from train_probe import Probe


def image_key(img: torch.Tensor) -> str:
    """Fingerprint of one training image ([3, R, R] float in [-1, 1] as the data module makes
    it): sha1 of its uint8 HWC RGB bytes, the same as of the PNG in the shard decoded by PIL."""
    u8 = torch.round((img.double() + 1) * 127.5).clamp_(0, 255).to(torch.uint8)
    return hashlib.sha1(u8.permute(1, 2, 0).contiguous().numpy().tobytes()).hexdigest()[:16]


def _hex_addr(s: str) -> tuple[str, int]:
    """/proc/net/tcp{,6} "ADDR:PORT" (address as 32-bit words in host order) -> (addr, port);
    an IPv4-mapped IPv6 address (a dual-stack socket, as the rendezvous store's) as IPv4."""
    host, port = s.split(":")
    raw = bytes.fromhex(host)
    raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    addr = ipaddress.ip_address(raw)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return str(addr), int(port, 16)


def tcp_peers() -> list[list]:
    """[local addr, local port, remote addr, remote port] of this process's established TCP
    connections, from /proc/net/tcp of its network namespace and the socket inodes of its fds."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    peers = []
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            f = line.split()
            if f[3] == "01" and f[9] in inodes:  # 01 = ESTABLISHED
                peers.append([*_hex_addr(f[1]), *_hex_addr(f[2])])
    return peers


class NodeProbe(Probe):
    def on_train_start(self, trainer, pl_module):
        super().on_train_start(trainer, pl_module)
        self.record.update(hostname=socket.gethostname(), node_id=os.environ.get("SLURM_NODEID"),
                           keys=[], losses=[], peers=[])
        self._write(trainer)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        super().on_train_batch_start(trainer, pl_module, batch, batch_idx)
        self.record["keys"] += [image_key(x) for x in batch["img"]]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        self.record["losses"].append({k: float(v) for k, v in sorted(trainer.callback_metrics.items())
                                      if k.startswith("loss")})
        if not self.record["peers"]:  # the process group's connections exist from setup on
            self.record["peers"] = tcp_peers()
        # After every step, so a test that kills the job mid-run reads what it did until then.
        self._write(trainer)
