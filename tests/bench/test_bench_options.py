"""The benchmarks' options: --quick sizes and --only choices (not timed)."""

from __future__ import annotations

from bench import ledger, scheduler, updates


def test_ledger_only_takes_a_database_for_its_configurations() -> None:
    assert ledger.configurations("", quick=False) == ["sqlite", "pg1", "pg16"]
    assert ledger.configurations("", quick=True) == ["sqlite", "pg16"]
    assert ledger.configurations("postgresql", quick=True) == ["pg1", "pg16"]
    assert ledger.configurations("pg16,sqlite", quick=False) == ["sqlite", "pg16"]
    assert ledger.configurations("nosuch", quick=False) == ["nosuch"]  # refused by main()


def test_quick_runs_on_the_20000_member_dataset_and_the_default_on_200000() -> None:
    for module in (ledger, updates, scheduler):
        assert module.parse_args(["--quick"]).members == 20_000
        assert module.parse_args([]).members == 200_000
    assert ledger.parse_args(["--quick", "--members", "500"]).members == 500


def test_the_delivery_burst_is_100_messages_to_one_chat_by_default() -> None:
    args = scheduler.parse_args([])
    assert (args.burst, args.messages) == (100, 2_500)
    assert scheduler.parse_args(["--only", "postgresql"]).only == "postgresql"
