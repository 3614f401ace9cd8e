"""Review suspected label errors in a browser, then apply the decisions and retrain.

``selfadapt review RUN_DIR`` serves the page (:mod:`.server`) or writes one self-contained HTML file
(``--static``, :mod:`.static_page`); decisions go to ``RUN_DIR/review.csv`` (:mod:`.store`).
``selfadapt apply-review RUN_DIR --out DIR`` writes the corrected labels (:mod:`.apply`), and
``selfadapt train --labels-from RUN_DIR/review.csv ...`` retrains on them
(:mod:`selfadapt.data.label_overrides`).
"""
