"""What AWS Fargate accepts: task sizes (cpu and memory) and where Fargate Spot runs.

Pure functions, no AWS calls: the configuration checks them at start-up and the engine can check
a template's size before it registers a task definition.

Sources (Amazon ECS Developer Guide):

- "Amazon ECS task definition parameters for Fargate", section "Task CPU and memory"
  https://docs.aws.amazon.com/AmazonECS/latest/developerguide/fargate-tasks-services.html#fargate-tasks-size
  -- the table of valid cpu/memory pairs for Linux tasks, :data:`TASK_SIZES`. A pair outside it is
  refused by ``RegisterTaskDefinition`` with ``ClientException: No Fargate configuration exists
  for given values: 256 CPU, 4096 memory. See the Amazon ECS documentation for the valid
  values.``
- "Task definition parameters", ``cpu`` and ``memory``: cpu "can be expressed as an integer using
  CPU units (for example, 1024) or as a string using vCPUs (for example, 1 vCPU or 1 vcpu)";
  memory "as an integer using MiB (for example, 1024) or as a string using GB (for example, 1GB
  or 1 GB)". :func:`units` reads both.
- "AWS Fargate capacity providers": "Linux tasks with the ARM64 architecture don't support the
  Fargate Spot capacity provider. Fargate Spot only supports Linux tasks with the X86_64
  architecture", and Windows containers on Fargate don't support it either
  (:func:`spot_allowed`).
"""

from __future__ import annotations

import re
from decimal import Decimal
from types import MappingProxyType
from typing import Literal

# cpu units -> the memory sizes (MiB) Fargate runs with them (Linux).
TASK_SIZES: MappingProxyType[int, tuple[int, ...]] = MappingProxyType(
    {
        256: (512, 1024, 2048),
        512: tuple(range(1024, 4096 + 1, 1024)),
        1024: tuple(range(2048, 8192 + 1, 1024)),
        2048: tuple(range(4096, 16384 + 1, 1024)),
        4096: tuple(range(8192, 30720 + 1, 1024)),
        8192: tuple(range(16384, 61440 + 1, 4096)),
        16384: tuple(range(32768, 122880 + 1, 8192)),
    }
)
CPU_CHOICES: tuple[int, ...] = tuple(TASK_SIZES)
MEMORY_CHOICES: tuple[int, ...] = tuple(sorted({m for sizes in TASK_SIZES.values() for m in sizes}))

ARCHITECTURES = ("X86_64", "ARM64")  # runtimePlatform.cpuArchitecture; absent means X86_64
SPOT_ARCHITECTURES = ("X86_64",)

_SIZE_RE = re.compile(r"([0-9]+(?:\.[0-9]+)?|\.[0-9]+)\s*(vcpu|gb)?", re.IGNORECASE)
_SUFFIX = {"cpu": "vcpu", "memory": "gb"}


def units(value: object, *, kind: Literal["cpu", "memory"] | None = None) -> int | None:
    """A task definition's ``cpu`` (CPU units) or ``memory`` (MiB) as ECS reads it, or None.

    Accepts a positive whole number (``256``, ``"256"``) or a string with a unit: ``"1 vCPU"``,
    ``"0.5 vcpu"`` (x 1024 CPU units), ``"2 GB"``, ``"2GB"`` (x 1024 MiB). ``kind="cpu"`` allows
    only vCPU, ``kind="memory"`` only GB; without ``kind`` either is read. None for anything ECS
    would not read: empty, zero, a bare fraction, ``"1024 MiB"``, or an amount that is not a
    whole number of units (``"0.3 vCPU"``).
    """
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value if value > 0 else None
    if not isinstance(value, str):
        return None
    match = _SIZE_RE.fullmatch(value.strip())
    if not match:
        return None
    number, suffix = match.group(1), (match.group(2) or "").lower()
    if suffix and kind is not None and suffix != _SUFFIX[kind]:
        return None
    if not suffix and "." in number:
        return None
    amount = Decimal(number) * (1024 if suffix else 1)
    if amount != amount.to_integral_value() or amount <= 0:
        return None
    return int(amount)


def memory_choices(cpu: int) -> list[int]:
    """The memory sizes (MiB) Fargate offers with ``cpu`` units; empty for an unknown cpu."""
    return list(TASK_SIZES.get(cpu, ()))


def cpu_choices(memory: int) -> list[int]:
    """The cpu values Fargate offers with ``memory`` MiB; empty when no cpu takes it."""
    return [cpu for cpu, sizes in TASK_SIZES.items() if memory in sizes]


def valid_pair(cpu: int, memory: int) -> bool:
    """True when Fargate runs a Linux task of ``cpu`` units and ``memory`` MiB."""
    return memory in TASK_SIZES.get(cpu, ())


def check_pair(cpu: int, memory: int) -> str | None:
    """None when the pair is valid, else ECS's refusal plus what would be accepted.

    ``No Fargate configuration exists for given values: 256 CPU, 4096 memory (256 CPU units take
    512, 1024 or 2048 MiB)``; for an unknown cpu the brackets list the Fargate cpu values.
    """
    if valid_pair(cpu, memory):
        return None
    refusal = f"No Fargate configuration exists for given values: {cpu} CPU, {memory} memory"
    if cpu not in TASK_SIZES:
        return f"{refusal} ({cpu} is not a Fargate CPU value: use {or_list(CPU_CHOICES)})"
    return f"{refusal} ({cpu} CPU units take {describe_memory(cpu)})"


def describe_memory(cpu: int) -> str:
    """``"512, 1024 or 2048 MiB"`` or ``"2048 to 8192 MiB in steps of 1024"`` for ``cpu``."""
    sizes = TASK_SIZES[cpu]
    if len(sizes) <= 4:
        return f"{or_list(sizes)} MiB"
    return f"{sizes[0]} to {sizes[-1]} MiB in steps of {sizes[1] - sizes[0]}"


def or_list(values: tuple[int, ...] | list[int]) -> str:
    """``"256, 512 or 1024"``."""
    words = [str(v) for v in values]
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


def spot_allowed(cpu_architecture: str | None, operating_system_family: str | None = None) -> bool:
    """Whether Fargate Spot runs a task of this ``runtimePlatform``.

    Only X86_64 Linux tasks: None (ECS's default, X86_64) or ``"X86_64"`` -> True; ``"ARM64"``
    -> False. An ``operating_system_family`` other than None or ``"LINUX"`` (Windows) -> False.
    """
    if operating_system_family not in (None, "LINUX"):
        return False
    return cpu_architecture is None or cpu_architecture in SPOT_ARCHITECTURES
