"""What the user's own prompts say about each candidate: on the newest prompt set run of the ladder that was measured
here with a noise floor (the reference run again on each prompt), did the candidate's answers move further from the
reference's than the reference moves from itself? (quality.noise_floor: within/beyond per prompt, and a one-sided
Wilcoxon test over the set.)

This is the evidence closest to the question "will it do for *our* prompts?": where it exists, Recommend's quality
rule uses it beside the mean KLD (decide.recommend, docs/recommend.md). Only a set run made here counts (issue 24),
newest first; the first that ran a label speaks for it. Labels are returned as stored ("Q4_K_M · KV q8_0");
decide.evidence maps them to candidates.
"""

from __future__ import annotations

from dataclasses import dataclass

from workbench.core.glossary import chance_words
from workbench.models.ladder import Ladder
from workbench.quality.noise_floor import stored_set_floor
from workbench.storage.store import Store

ALPHA = 0.05  # beyond the floor "beyond chance": the one-sided Wilcoxon p below this
MAX_SET_RUNS = 20  # set runs looked at, newest first (each is read and diffed once per study)


@dataclass(frozen=True)
class PromptsEvidence:
    """One candidate on one set run's prompts, against the reference's own variation there."""

    set_run_id: int
    prompts: int  # prompts with a floor and the candidate's answer
    beyond: int  # of those, where it changed more than the reference's repeats did
    p_value: float | None  # one-sided Wilcoxon, words changed vs the repeats'; None below 2 differing prompts
    reference: str
    inherited_from: str | None = None  # the file's own f16-cache figure, used for a KV variant that has none

    @property
    def beyond_floor(self) -> bool:
        """Its answers moved further than the reference's own variation, and chance is an unlikely explanation."""
        return self.p_value is not None and self.p_value < ALPHA

    def words(self) -> str:
        """E.g. "on your prompts its answers went beyond F16's own variation on 8 of 10 (chance would do this about
        1 in 256 times; set run #3, measured)"."""
        chance = f"{chance_words(self.p_value)}; " if self.p_value is not None else ""
        how = f"set run #{self.set_run_id}, measured" + (f" with {self.inherited_from}'s f16 KV cache"
                                                        if self.inherited_from else "")
        if self.beyond_floor:
            where = f"went beyond {self.reference}'s own variation on {self.beyond} of {self.prompts}"
        elif not self.beyond:
            where = f"stayed within {self.reference}'s own variation on all {self.prompts}"
        else:
            where = f"went beyond {self.reference}'s own variation on only {self.beyond} of {self.prompts}"
        return f"on your prompts its answers {where} ({chance}{how})"


def prompt_floors(store: Store, ladder: Ladder) -> dict[str, PromptsEvidence]:
    """Stored label -> how its answers stood against the reference's own variation, from the newest local set run
    of `ladder` (same name and reference) whose noise floor measured it."""
    found: dict[str, PromptsEvidence] = {}
    reference = ladder.reference.label
    for row in store.list_set_runs(limit=MAX_SET_RUNS):
        if row.ladder_name != ladder.name or row.reference_label != reference or not row.n_finished:
            continue
        set_run = store.get_set_run(row.id)
        if set_run is None or set_run.imported_from is not None:  # only what was measured here decides
            continue
        labels = set(set_run.labels) - {reference}
        if not set_run.noise_repeats or labels <= set(found):  # no floor, or nothing new: skip the diffs
            continue
        floor = stored_set_floor(store, set_run)
        for q in floor.quants if floor is not None else ():
            if q.label not in found and q.prompts > 0:
                found[q.label] = PromptsEvidence(row.id, q.prompts, q.beyond, q.p_value, reference)
    return found
