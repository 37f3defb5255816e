"""The catalog: data products, their listing review, search and DCAT export."""
