"""Evidence: the database models, the recorder of facts, and loading them back."""
