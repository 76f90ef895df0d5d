"""The embedded demo corpus: a MELD-shaped mini corpus generated from assets inside installed packages."""
