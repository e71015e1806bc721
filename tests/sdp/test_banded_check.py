"""The banded Cholesky certificate of a LipSDP LMI (lipopt.sdp.certification.banded_check): the same
verdicts as the dense eigenvalue check, a certified eigenvalue bound that is never below the true one,
and refusals where the matrix is not negative definite by the margin."""

from __future__ import annotations

import numpy as np
import pytest

from lipopt.sdp import certification as cert
from lipopt.sdp.lipsdp import build_chain, closed_form_rho
from tests import nets


def _deep_chain():
    from lipopt.sdp.first_order import eclipse_fast, tridiagonal

    net = nets.random_mlp([5] + [8] * 10 + [2], 3)
    chain = build_chain(net)
    _, lam = eclipse_fast(tridiagonal(chain))
    return chain, lam


def test_banded_and_dense_checks_agree_on_a_deep_chain(monkeypatch: pytest.MonkeyPatch) -> None:
    chain, lam = _deep_chain()
    rc, _ = closed_form_rho(chain, lam)
    dense = {f: cert.eigen_check(chain, rc * f, lam) for f in (0.999, 1.001, 1.1)}
    assert all(c.how == "eigvalsh" for c in dense.values())  # below BANDED_MIN_SIZE
    monkeypatch.setattr(cert, "BANDED_MIN_SIZE", 10)
    for f, d in dense.items():
        b = cert.eigen_check(chain, rc * f, lam)
        assert b.how == "banded Cholesky" and b.size == d.size
        assert b.passed == d.passed == (f > 1)
        if b.passed:
            assert b.lam_max >= d.lam_max  # a certified upper bound on the largest eigenvalue
            assert b.lam_max <= -b.margin
        else:
            assert np.isnan(b.lam_max)


def test_banded_check_needs_the_margin_and_sees_a_positive_eigenvalue() -> None:
    n, w = 50, 2
    rng = np.random.default_rng(1)
    m = -np.eye(n)
    for k in (1, 2):
        off = 0.1 * rng.normal(size=n - k)
        m += np.diag(off, k) + np.diag(off, -k)
    top = float(np.linalg.eigvalsh(m)[-1])
    assert cert.banded_check(m, w, margin=1e-12).passed
    assert not cert.banded_check(m, w, margin=-top * 1.01).passed  # lambda_max > -margin: refused
    bad = m.copy()
    bad[7, 7] = 0.5  # one positive direction
    assert float(np.linalg.eigvalsh(bad)[-1]) > 0
    assert not cert.banded_check(bad, w, margin=0.0).passed


def test_bandwidth_is_read_from_the_nonzeros() -> None:
    m = np.eye(6)
    m[0, 3] = m[3, 0] = 1.0
    assert cert._bandwidth(m) == 3 and cert._bandwidth(np.eye(4)) == 0


def test_tridiagonal_closed_form_equals_the_dense_schur_complement(monkeypatch: pytest.MonkeyPatch) -> None:
    chain, lam = _deep_chain()
    lam = lam * 1.01  # strictly inside the domain
    dense, _ = closed_form_rho(chain, lam)  # below BANDED_MIN_SIZE: the dense Schur complement
    monkeypatch.setattr(cert, "BANDED_MIN_SIZE", 10)
    fast = cert._closed_form_tridiagonal(chain, lam)
    assert fast is not None and fast == pytest.approx(dense, rel=1e-9)
    assert closed_form_rho(chain, lam)[0] == fast
    assert cert._closed_form_tridiagonal(chain, lam * 0.0 + 1e-12) is None  # outside the domain


def test_lmi_matrix_of_a_chain_is_symmetric_with_the_rho_block() -> None:
    chain, lam = _deep_chain()
    m1, m2 = cert.lmi_matrix(chain, 1.0, lam), cert.lmi_matrix(chain, 3.0, lam)
    np.testing.assert_array_equal(m1, m1.T)
    diff = m1 - m2
    np.testing.assert_allclose(diff[:chain.n0, :chain.n0], 2.0 * np.eye(chain.n0))
    diff[:chain.n0, :chain.n0] = 0.0
    assert not diff.any()


def test_depth_benchmark_runs_and_orders_its_forms(tmp_path) -> None:
    """benchmarks/bench_lipsdp_depth.py on a tiny depth: every form certified, the descents below the
    closed form (their start) and the norm product, above a certified lower bound; plot written."""
    from lipopt.methods import run_method
    from lipopt.spec import Norm, Question
    from tests.paths import benchmark_module

    mod = benchmark_module("bench_lipsdp_depth")
    rows = mod.run([3], 6, ["fast", "first-order", "first-order-adam"], 60.0, 1)
    by = {r["form"]: r["value"] for r in rows}
    assert all(v is not None for v in by.values())
    low = run_method("grad-ascent", mod.net_of(3, 6), Question(Norm.L2, Norm.L2)).value
    for form in ("first-order", "first-order-adam"):
        assert low <= by[form] <= by["fast"] * (1 + 1e-9) <= rows[0]["naive"]
    mod.plot(rows, tmp_path / "depth.png")
    assert (tmp_path / "depth.png").stat().st_size > 0
    assert "first-order-adam" in mod.render(rows)
