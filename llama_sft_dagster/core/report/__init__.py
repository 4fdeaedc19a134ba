"""What a person reads after a run: the row funnel, dropped-row samples, tidy metadata, small plots."""
