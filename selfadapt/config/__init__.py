"""Configuration: each setting declared once (:mod:`~selfadapt.config.fields`), the run's sections
(:mod:`~selfadapt.config.sections`) and whole configuration (:mod:`~selfadapt.config.run`), flags
(:mod:`~selfadapt.config.flags`), presets and a run's provenance (:mod:`~selfadapt.config.provenance`)."""
