"""Evaluation on labelled data: the simulated scenario and the SKAB protocol with
its reference baselines. No product detector lives here."""
