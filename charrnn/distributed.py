"""PyTorch DDP under torchrun: who this process is, and the few collectives training needs.

`torchrun --nproc_per_node N -m charrnn train …` sets RANK / WORLD_SIZE / LOCAL_RANK; each rank then
takes its own contiguous block of the B streams, DistributedDataParallel averages gradients, and
rank 0 alone writes the run folder, logs and checkpoints. Without torchrun, `Dist()` is a
single process and every collective is the identity, so the training loop has one code path.
"""

from __future__ import annotations

import datetime
import os
import socket

import torch
import torch.distributed as dist

from charrnn.cores import under_torchrun
from charrnn.errors import UserError, option

COLLECTIVE_TIMEOUT_MIN = 120


class Dist:
    def __init__(self) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        # Under torchrun even one process joins a process group (as nanoGPT does): the DDP path
        # is then the same whatever the count, and one GPU can exercise NCCL.
        self.enabled = under_torchrun()
        self.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def start(self, device: torch.device) -> torch.device:
        """Join the process group (NCCL on GPU, gloo on CPU); return this rank's device."""
        if not self.enabled:
            return device
        if device.type == "cuda":  # modulo: a launcher may show each process only its own GPU
            device = torch.device("cuda", self.local_rank % torch.cuda.device_count())
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            # Rank 0 alone preprocesses the corpus while the others wait at a barrier: a big
            # corpus takes longer than the default 10-minute collective timeout.
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                    timeout=datetime.timedelta(minutes=COLLECTIVE_TIMEOUT_MIN))
            if device.type == "cuda":
                self._refuse_shared_gpus(device)
        self.device = device
        return device

    def _refuse_shared_gpus(self, device: torch.device) -> None:
        """NCCL runs one process per GPU; two ranks on one GPU fail at the first collective with
        NCCL's own words. The ranks compare their GPUs first, over gloo (which talks through the
        host, so it works whatever the GPUs are), and every rank says the same line."""
        props = torch.cuda.get_device_properties(device)
        mine = (socket.gethostname(), str(getattr(props, "uuid", device)))
        everyone: list = [None] * self.world
        dist.all_gather_object(everyone, mine, group=dist.new_group(backend="gloo"))
        clash = shared_gpu(everyone)
        if clash is not None:
            dist.destroy_process_group()
            raise UserError(shared_gpu_message(clash, everyone[clash[0]][0],
                                               torch.cuda.device_count()))

    def stop(self, synchronize: bool = False) -> None:
        """Leave the process group; after a run that ended normally, all ranks together (a rank
        that tears its gloo connections down while a peer still talks to it can abort at exit:
        "terminate called without an active exception")."""
        if self.enabled and dist.is_initialized():
            if synchronize:
                dist.barrier()
            dist.destroy_process_group()

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            value = value.clone()
            dist.all_reduce(value)
            value /= self.world
        return value

    def agree(self, seconds: float, flag: bool) -> tuple[float, bool]:
        """(the largest `seconds`, whether any rank's `flag` is set): one collective for both."""
        if not self.enabled:
            return seconds, flag
        tensor = torch.tensor([seconds, 1.0 if flag else 0.0], dtype=torch.float64,
                              device=self.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return float(tensor[0]), bool(tensor[1] > 0)

    def gather_rows(self, local: torch.Tensor) -> torch.Tensor:
        """(layers, B/W, H) on each rank → (layers, B, H), rows in rank order."""
        if not self.enabled:
            return local
        parts = [torch.empty_like(local) for _ in range(self.world)]
        dist.all_gather(parts, local.contiguous())
        return torch.cat(parts, dim=1)

    def broadcast(self, obj: object) -> object:
        """Rank 0's Python object, on every rank."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj: object) -> list:
        """Every rank's Python object, in rank order, on every rank."""
        if not self.enabled:
            return [obj]
        box: list = [None] * self.world
        dist.all_gather_object(box, obj)
        return box

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def check_batch(self, batch: int, resumed: bool = False) -> None:
        """`resumed`: the batch is the run's own, so the process count is what may change."""
        if batch % self.world and resumed:
            counts = [n for n in range(1, min(batch, 16) + 1) if batch % n == 0]
            nearest = max(n for n in counts if n < self.world)
            raise UserError(f"the run's {option('batch_size')} {batch} is not divisible by the {self.world} "
                            f"processes, and a resumed run keeps its batch: resume it with "
                            f"--nproc_per_node {nearest}, or another count that divides it "
                            f"({', '.join(map(str, counts))})")
        if batch % self.world:
            raise UserError(batch_not_divisible(batch, self.world))


def refuse_torchrun(what: str) -> None:
    """What trains in one process: refused under torchrun, before any rank makes a run folder
    of its own."""
    if Dist().enabled:
        raise UserError(f"{what} trains in one process (under torchrun each rank would make a "
                        "run of its own): run it without torchrun, which trains language models")


def shared_gpu(identities: list[tuple[str, str]]) -> tuple[int, int] | None:
    """The first two ranks whose (host, GPU) is the same, or None when every rank has its own."""
    first: dict[tuple[str, str], int] = {}
    for rank, identity in enumerate(map(tuple, identities)):
        if identity in first:
            return first[identity], rank
        first[identity] = rank
    return None


def shared_gpu_message(ranks: tuple[int, int], host: str, gpus: int) -> str:
    return (f"ranks {ranks[0]} and {ranks[1]} of this torchrun job would share one GPU on {host} "
            f"(it has {gpus}): NCCL runs one process per GPU, so start at most "
            f"--nproc_per_node {gpus} there, or train on CPU processes with {option('device')} cpu (gloo)")


def batch_not_divisible(batch: int, world: int) -> str:
    """The message for a batch that the processes cannot share evenly, with the nearest that do."""
    lower, upper = batch - batch % world, batch - batch % world + world
    near = f"{lower} or {upper}" if lower else str(upper)
    return f"{option('batch_size')} {batch} must be divisible by the {world} processes: give e.g. {near}"
