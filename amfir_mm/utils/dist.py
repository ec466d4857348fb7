"""Small distributed helpers for the tools."""
import torch.distributed as torch_dist


def close_distributed() -> None:
    """End a multi-process run in order: wait for every rank, then tear the
    process group down (a rank leaving early can abort its peers)."""
    if torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.barrier()
        torch_dist.destroy_process_group()
