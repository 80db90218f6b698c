"""returnbridge: keeps returns consistent between Centra and Reveni."""
