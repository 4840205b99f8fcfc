"""What a person sees when printing a verdict or a study's results: sentences, not dataclass
reprs (``repr`` keeps every field)."""

from __future__ import annotations

import pytest

from sbc.verdicts import Cause, Verdict
from support import exact_study


def test_a_failing_verdict_reads_as_sentences_with_cause_and_next_step():
    v = Verdict("fail", "mu_alpha deviates from uniform ranks in 50 fits (Holm p = 0.0001)",
                failing=("mu_alpha", "sigma"), recommendation="check the prior of mu_alpha",
                cause=Cause("model or code", "clean fits fail alone (p = 0.001)"))
    text = str(v)
    assert text == ("fail: model or code: mu_alpha deviates from uniform ranks in 50 fits "
                    "(Holm p = 0.0001). Failing: mu_alpha, sigma. Cause: model or code, "
                    "because clean fits fail alone (p = 0.001). Next: check the prior of "
                    "mu_alpha.")
    assert "Verdict(" not in text and repr(v).startswith("Verdict(status='fail'")


@pytest.mark.parametrize("warnings, label", [((), "pass: "),
                                             (("flagged fits",), "pass, with warnings "
                                              "(flagged fits): "),
                                             (("low power",), "pass, low power: ")])
def test_a_pass_names_what_qualifies_it(warnings, label):
    assert str(Verdict("pass", "no group deviates", warnings=warnings)) == \
        f"{label}no group deviates."


def test_printed_results_say_the_overall_and_each_cells_verdict(tmp_path):
    import sbc

    study = tmp_path / "s.toml"
    study.write_text(exact_study("readable", 20))
    results = sbc.run(sbc.Study.from_toml(study), tmp_path / "out", workers=0,
                      progress=False)
    text = str(results)
    assert text.startswith(f"Study 'readable' ({tmp_path / 'out'}): 20 replicates stored, "
                           "20 fitted.\nOverall: ")
    assert f"Overall: {results.verdict}" in text
    ((model, design), verdict), = results.verdicts.items()
    assert f"\n  {model} at {design} (20 fits): {verdict}" in text
    assert str(verdict).startswith(verdict.label)
    assert repr(results).startswith("<sbc.Results 'readable'")
