"""The shared core: settings, folders, encoders, data, the encoder model base, the feature cache, training,
back ends and the estimator base. Nothing here knows of a particular task (``bertlstm.tasks`` builds on it)."""
