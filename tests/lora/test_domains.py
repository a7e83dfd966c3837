import pytest

from flare_chain.errors import ConfigError
from flare_chain.lora.domains import (
    DOMAINS,
    available_domains,
    domain_files,
    domain_texts,
    pretraining_files,
    stdlib_root,
)


def test_at_least_four_domains_exist_in_node_order() -> None:
    found = available_domains()
    assert len(found) >= 4
    assert found == [d for d in DOMAINS if d in found]


def test_domain_texts_are_deterministic_and_sorted() -> None:
    files = domain_files("json")
    assert files == sorted(files)
    assert domain_texts("json") == domain_texts("json")


def test_pretraining_text_excludes_domains_and_tests() -> None:
    root = stdlib_root()
    for path in pretraining_files():
        parts = path.relative_to(root).parts
        assert parts[0] not in DOMAINS
        assert not {"test", "tests", "idle_test", "site-packages"} & set(parts[:-1])


def test_domain_files_leave_out_test_directories() -> None:
    assert all("test" not in p.relative_to(stdlib_root()).parts[:-1] for p in domain_files("unittest"))


def test_unknown_domain_is_refused_with_the_choices() -> None:
    with pytest.raises(ConfigError, match="choose one of email"):
        domain_texts("not_a_domain")
