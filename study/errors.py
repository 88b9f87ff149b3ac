"""The two refusals a participant can meet, in one place every study module can import without cycles.

Both carry a message written for the participant that never names an arm; the page shows it as it is
(``study.ui`` turns them into ``gr.Error``), unlike any other exception, whose text could give an arm away.
"""
from __future__ import annotations


class ParticipantError(ValueError):
    """Something the participant can fix; the message is written for them and never names an arm."""


class AnswerRefused(ValueError):
    """An answer the study cannot take; the message is written for the participant."""
