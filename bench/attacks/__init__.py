"""The hostile-client benchmark's parts (``python -m bench hostile`` runs them; see bench/hostile.py).

- ``target``: the benchmark's own tiny study, built once, and a fresh app on a copy of it;
- ``clients``: participants and attackers, each from its own address, through gradio_client or raw HTTP,
  and what each answer was (``classify``);
- ``photos``: the largest allowed photos and the oversized ones of the attack, every file distinct;
- ``memory``, ``passwords``, ``floods``: the four measurements, each returning its text and summary row.
"""
