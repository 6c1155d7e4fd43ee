//! The catalogue: products, their import by sku, and the demo seed.

use std::collections::HashMap;

use super::*;

const PRODUCT_COLUMNS: &str = "id, sku, name, description, price_fen, stock, active";

impl Db {
    /// Fills an empty catalogue with `entries`, once in the database's life (the demo
    /// catalogue of sandbox mode): does nothing when products exist or it was done before.
    /// Returns how many were added.
    pub async fn seed_catalogue(&self, entries: &[CatalogueEntry]) -> Result<usize, StoreError> {
        let now = now_secs();
        let mut tx = self.writer.begin().await?;
        // Set the one-time seeding flag: a replica starting at the same moment waits on this row
        // and then finds it set.
        let first = sqlx::query(
            "INSERT INTO app_flags (name, set_at) VALUES ('demo_catalogue', $1)
             ON CONFLICT DO NOTHING",
        )
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM products")
            .fetch_one(&mut *tx)
            .await?;
        if !first || count > 0 {
            tx.commit().await?;
            return Ok(0);
        }
        let report = import_in(&mut tx, entries, false, now).await?;
        tx.commit().await?;
        Ok(report.added)
    }

    /// Upserts `entries` by sku in one transaction: all of them or, on any error, none. A new
    /// product gets its stock (0 when the entry has none); an existing one keeps its stock
    /// unless `restock` (and the entry has one). Products not in `entries` are left as they are.
    pub async fn import_catalogue(
        &self,
        entries: &[CatalogueEntry],
        restock: bool,
    ) -> Result<ImportReport, StoreError> {
        let mut tx = self.writer.begin().await?;
        let report = import_in(&mut tx, entries, restock, now_secs()).await?;
        tx.commit().await?;
        Ok(report)
    }

    /// Adds a product; returns it with its id.
    pub async fn insert_product(&self, new: &NewProduct<'_>) -> Result<Product, StoreError> {
        let now = now_secs();
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO products (sku, name, price_fen, stock, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $5) RETURNING id",
        )
        .bind(new.sku)
        .bind(new.name)
        .bind(new.price.0)
        .bind(new.stock)
        .bind(now)
        .fetch_one(&self.writer)
        .await?;
        Ok(Product {
            id,
            sku: new.sku.to_owned(),
            name: new.name.to_owned(),
            description: String::new(),
            price: new.price,
            stock: new.stock,
            active: true,
        })
    }

    /// The products on sale, in id order.
    pub async fn products(&self) -> Result<Vec<Product>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {PRODUCT_COLUMNS} FROM products WHERE active = 1 ORDER BY id"
        ))
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(product_from_row).collect()
    }

    /// The products on sale among `ids` (for a cart), in id order.
    pub async fn products_by_id(&self, ids: &[i64]) -> Result<Vec<Product>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let marks = (1..=ids.len())
            .map(|n| format!("${n}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT {PRODUCT_COLUMNS} FROM products WHERE active = 1 AND id IN ({marks})
             ORDER BY id"
        );
        let mut query = sqlx::query(&sql);
        for id in ids {
            query = query.bind(id);
        }
        let rows = query.fetch_all(&self.reader).await?;
        rows.iter().map(product_from_row).collect()
    }

    /// One product, on sale or not, if it exists.
    pub async fn product(&self, id: i64) -> Result<Option<Product>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {PRODUCT_COLUMNS} FROM products WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(product_from_row).transpose()
    }
}

pub(super) fn product_from_row(row: &DbRow) -> Result<Product, StoreError> {
    Ok(Product {
        id: row.try_get("id")?,
        sku: row.try_get("sku")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        price: Fen(row.try_get("price_fen")?),
        stock: row.try_get("stock")?,
        active: row.try_get::<i64, _>("active")? != 0,
    })
}

/// What an import compares: the fields a catalogue file sets.
type Stored = (String, String, i64, i64, i64);

async fn import_in(
    tx: &mut Tx<'_>,
    entries: &[CatalogueEntry],
    restock: bool,
    now: i64,
) -> Result<ImportReport, StoreError> {
    // The whole catalogue is read once (a small merchant's: thousands of rows at most), so
    // that unchanged products are not rewritten and the report can say what changed.
    let rows: Vec<(String, String, String, i64, i64, i64)> =
        sqlx::query_as("SELECT sku, name, description, price_fen, stock, active FROM products")
            .fetch_all(&mut **tx)
            .await?;
    let stored: HashMap<String, Stored> = rows
        .into_iter()
        .map(|(sku, name, description, price, stock, active)| {
            (sku, (name, description, price, stock, active))
        })
        .collect();
    let mut report = ImportReport::default();
    for entry in entries {
        let active = i64::from(entry.active);
        match stored.get(&entry.sku) {
            None => {
                sqlx::query(
                    "INSERT INTO products (sku, name, description, price_fen, stock, active,
                                           created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
                )
                .bind(&entry.sku)
                .bind(&entry.name)
                .bind(&entry.description)
                .bind(entry.price.0)
                .bind(entry.stock.unwrap_or(0))
                .bind(active)
                .bind(now)
                .execute(&mut **tx)
                .await?;
                report.added += 1;
            }
            Some((name, description, price, stock, was_active)) => {
                // Stock is written only when restocking: otherwise the row's own value stays,
                // whatever orders reserve meanwhile.
                let restock_to = entry.stock.filter(|_| restock);
                if (name, description, *price, *was_active)
                    == (&entry.name, &entry.description, entry.price.0, active)
                    && restock_to.is_none_or(|to| to == *stock)
                {
                    report.unchanged += 1;
                    continue;
                }
                sqlx::query(
                    "UPDATE products SET name = $1, description = $2, price_fen = $3,
                                         stock = COALESCE($4, stock), active = $5,
                                         updated_at = $6
                     WHERE sku = $7",
                )
                .bind(&entry.name)
                .bind(&entry.description)
                .bind(entry.price.0)
                .bind(restock_to)
                .bind(active)
                .bind(now)
                .bind(&entry.sku)
                .execute(&mut **tx)
                .await?;
                report.updated += 1;
            }
        }
    }
    Ok(report)
}
