"""bot/fargate.py: the Fargate task-size table, ECS's size strings, and where Spot runs."""

from __future__ import annotations

from typing import Any

import pytest

from bot.fargate import (
    ARCHITECTURES,
    CPU_CHOICES,
    MEMORY_CHOICES,
    check_pair,
    cpu_choices,
    memory_choices,
    or_list,
    spot_allowed,
    units,
    valid_pair,
)

# Written out from the AWS table (fargate-tasks-services.html#fargate-tasks-size), not computed
# the way bot/fargate.py computes it, so a wrong range or step there fails here.
GiB = 1024
TABLE = {
    256: [512, 1 * GiB, 2 * GiB],
    512: [1 * GiB, 2 * GiB, 3 * GiB, 4 * GiB],
    1024: [2 * GiB, 3 * GiB, 4 * GiB, 5 * GiB, 6 * GiB, 7 * GiB, 8 * GiB],
    2048: [g * GiB for g in range(4, 17)],
    4096: [g * GiB for g in range(8, 31)],
    8192: [g * GiB for g in (16, 20, 24, 28, 32, 36, 40, 44, 48, 52, 56, 60)],
    16384: [g * GiB for g in (32, 40, 48, 56, 64, 72, 80, 88, 96, 104, 112, 120)],
}
VALID = [(cpu, memory) for cpu, sizes in TABLE.items() for memory in sizes]


@pytest.mark.parametrize(("cpu", "memory"), VALID)
def test_every_pair_in_the_table_is_valid(cpu: int, memory: int) -> None:
    assert valid_pair(cpu, memory)
    assert check_pair(cpu, memory) is None


@pytest.mark.parametrize(
    ("cpu", "memory"),
    [
        (256, 4096),  # too much for .25 vCPU
        (256, 256),
        (512, 512),  # too little for .5 vCPU
        (512, 5120),
        (1024, 1536),  # not a whole GB
        (1024, 1024),
        (2048, 17408),  # 17 GB: above 2 vCPU's 16
        (4096, 31744),  # 31 GB: above 4 vCPU's 30
        (8192, 20000),
        (8192, 17408),  # 17 GB: 8 vCPU steps by 4 GB
        (8192, 65536),
        (16384, 32000),
        (16384, 36864),  # 36 GB: 16 vCPU steps by 8 GB
        (16384, 131072),
        (128, 512),  # not a Fargate cpu
        (3072, 8192),
        (32768, 65536),
    ],
)
def test_pairs_outside_the_table_are_refused(cpu: int, memory: int) -> None:
    assert not valid_pair(cpu, memory)
    message = check_pair(cpu, memory)
    assert message is not None
    assert message.startswith(
        f"No Fargate configuration exists for given values: {cpu} CPU, {memory} memory ("
    )


def test_the_table_has_exactly_the_documented_rows() -> None:
    assert list(CPU_CHOICES) == list(TABLE)
    for cpu, sizes in TABLE.items():
        assert memory_choices(cpu) == sizes
    assert memory_choices(3072) == []
    assert set(MEMORY_CHOICES) == {m for sizes in TABLE.values() for m in sizes}
    assert list(MEMORY_CHOICES) == sorted(MEMORY_CHOICES)


@pytest.mark.parametrize(
    ("memory", "cpus"),
    [(512, [256]), (2048, [256, 512, 1024]), (16384, [2048, 4096, 8192]), (61440, [8192])],
)
def test_cpu_choices_for_a_memory_size(memory: int, cpus: list[int]) -> None:
    assert cpu_choices(memory) == cpus


def test_memory_choices_is_a_copy() -> None:
    memory_choices(256).append(4096)
    assert not valid_pair(256, 4096)


@pytest.mark.parametrize(
    ("cpu", "memory", "expected"),
    [
        (
            256,
            4096,
            "No Fargate configuration exists for given values: 256 CPU, 4096 memory "
            "(256 CPU units take 512, 1024 or 2048 MiB)",
        ),
        (
            512,
            512,
            "No Fargate configuration exists for given values: 512 CPU, 512 memory "
            "(512 CPU units take 1024, 2048, 3072 or 4096 MiB)",
        ),
        (
            1024,
            1536,
            "No Fargate configuration exists for given values: 1024 CPU, 1536 memory "
            "(1024 CPU units take 2048 to 8192 MiB in steps of 1024)",
        ),
        (
            8192,
            20000,
            "No Fargate configuration exists for given values: 8192 CPU, 20000 memory "
            "(8192 CPU units take 16384 to 61440 MiB in steps of 4096)",
        ),
        (
            16384,
            32000,
            "No Fargate configuration exists for given values: 16384 CPU, 32000 memory "
            "(16384 CPU units take 32768 to 122880 MiB in steps of 8192)",
        ),
        (
            100,
            512,
            "No Fargate configuration exists for given values: 100 CPU, 512 memory "
            "(100 is not a Fargate CPU value: use 256, 512, 1024, 2048, 4096, 8192 or 16384)",
        ),
    ],
)
def test_check_pair_speaks_like_ecs_and_says_what_is_allowed(
    cpu: int, memory: int, expected: str
) -> None:
    assert check_pair(cpu, memory) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (256, 256),
        ("256", 256),
        (" 4096 ", 4096),
        ("1 vCPU", 1024),
        ("1 vcpu", 1024),
        ("0.5 vcpu", 512),
        ("0.25 vCPU", 256),
        (".25 vCPU", 256),
        ("16vCPU", 16384),
        ("2 GB", 2048),
        ("2GB", 2048),
        ("0.5 GB", 512),
        ("120 gb", 122880),
        ("", None),
        ("   ", None),
        (None, None),
        (0, None),
        ("0", None),
        (-256, None),
        ("-256", None),
        (True, None),
        (256.0, None),
        ("256.5", None),
        ("0.3 vCPU", None),  # 307.2 units
        ("1024 MiB", None),  # ECS reads bare MiB or GB, not a MiB suffix
        ("1 TB", None),
        ("lots", None),
        ("1 vCPU 2 GB", None),
        ("²", None),
    ],
)
def test_units_reads_what_ecs_reads(value: Any, expected: int | None) -> None:
    assert units(value) == expected


@pytest.mark.parametrize(
    ("value", "kind", "expected"),
    [
        ("1 vCPU", "cpu", 1024),
        ("1 vCPU", "memory", None),
        ("2 GB", "memory", 2048),
        ("2 GB", "cpu", None),
        ("512", "cpu", 512),
        ("512", "memory", 512),
    ],
)
def test_units_of_one_kind_refuses_the_other_unit(
    value: str, kind: Any, expected: int | None
) -> None:
    assert units(value, kind=kind) == expected


@pytest.mark.parametrize(
    ("architecture", "family", "allowed"),
    [
        (None, None, True),
        ("X86_64", None, True),
        ("X86_64", "LINUX", True),
        ("ARM64", None, False),
        ("ARM64", "LINUX", False),
        ("X86_64", "WINDOWS_SERVER_2022_CORE", False),
        ("x86_64", None, False),  # ECS's enum is upper case
    ],
)
def test_fargate_spot_runs_only_x86_64_linux(
    architecture: str | None, family: str | None, allowed: bool
) -> None:
    assert spot_allowed(architecture, family) is allowed


def test_architectures_are_ecs_names() -> None:
    assert set(ARCHITECTURES) == {"X86_64", "ARM64"}
    assert [spot_allowed(a) for a in ARCHITECTURES] == [True, False]


@pytest.mark.parametrize(
    ("values", "expected"), [([256], "256"), ([1, 2], "1 or 2"), ([1, 2, 3], "1, 2 or 3")]
)
def test_or_list(values: list[int], expected: str) -> None:
    assert or_list(values) == expected
