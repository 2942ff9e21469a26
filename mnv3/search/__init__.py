"""The paper's search, the part of it one machine can do: NetAdapt over our JSON specs."""
