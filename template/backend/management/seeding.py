"""Insert sample rows into every table, parents before children."""

from __future__ import annotations

import logging

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase

from management.samples import SampleFactory, model_for_table

logger = logging.getLogger(__name__)


def seed_sample_rows(rows_per_model: int, *, seed: int = 0) -> dict[str, int]:
    """Insert ``rows_per_model`` sample rows into each empty table, in one transaction.

    Tables that already hold rows are left alone, so seeding twice adds nothing.
    Return the number of rows inserted per table.
    """
    import models
    from database import SessionLocal, begin_write

    factory = SampleFactory(seed, reuse_parents=True)
    inserted: dict[str, int] = {}
    with SessionLocal() as db:
        begin_write(db)
        for table in models.Base.metadata.sorted_tables:
            model = mapped_model(models.Base, table)
            if model is None:
                continue
            if db.scalar(sa.select(sa.func.count()).select_from(table)):
                continue
            for _ in range(rows_per_model):
                db.add(model(**factory.row_values(model, db)))
                db.flush()
            inserted[table.name] = rows_per_model
        # Parents created on the way count too.
        counts = {
            table.name: db.scalar(sa.select(sa.func.count()).select_from(table))
            for table in models.Base.metadata.sorted_tables
            if table.name in inserted
        }
        db.commit()
    logger.info("Seeded %s", counts)
    return counts


def mapped_model(
    base: type[DeclarativeBase], table: sa.Table
) -> type[DeclarativeBase] | None:
    try:
        return model_for_table(base, table)
    except LookupError:
        return None
