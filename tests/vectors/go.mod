module pyconsul/tests/vectors

go 1.19
