"""Training, evaluation, sweeps and their executors (imported as `che.runners`)."""
