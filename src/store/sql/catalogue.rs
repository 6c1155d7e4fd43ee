//! The catalogue: products and the demo seed.

use super::*;

impl Db {
    /// Fills an empty catalogue with the demo products; does nothing when products exist.
    /// Returns how many were added.
    pub async fn seed_demo_catalogue(&self) -> Result<usize, StoreError> {
        const DEMO: [(&str, i64, i64); 6] = [
            ("西湖龙井茶 250g", 12_800, 50),
            ("云南普洱茶饼 357g", 8_850, 30),
            ("景德镇青花瓷茶杯", 3_900, 100),
            ("广式双黄莲蓉月饼礼盒", 16_800, 20),
            ("手工竹编茶盘", 25_900, 10),
            ("宜兴紫砂壶", 59_900, 5),
        ];
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
        for (name, price, stock) in DEMO {
            sqlx::query(
                "INSERT INTO products (name, price_fen, stock, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $4)",
            )
            .bind(name)
            .bind(price)
            .bind(stock)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(DEMO.len())
    }

    /// Adds a product; returns it with its id.
    pub async fn insert_product(&self, new: &NewProduct<'_>) -> Result<Product, StoreError> {
        let now = now_secs();
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO products (name, price_fen, stock, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $4) RETURNING id",
        )
        .bind(new.name)
        .bind(new.price.0)
        .bind(new.stock)
        .bind(now)
        .fetch_one(&self.writer)
        .await?;
        Ok(Product {
            id,
            name: new.name.to_owned(),
            price: new.price,
            stock: new.stock,
        })
    }

    /// The catalogue, in id order.
    pub async fn products(&self) -> Result<Vec<Product>, StoreError> {
        let rows: Vec<(i64, String, i64, i64)> =
            sqlx::query_as("SELECT id, name, price_fen, stock FROM products ORDER BY id")
                .fetch_all(&self.reader)
                .await?;
        Ok(rows.into_iter().map(product_from_row).collect())
    }

    /// One product, if it exists.
    pub async fn product(&self, id: i64) -> Result<Option<Product>, StoreError> {
        let row: Option<(i64, String, i64, i64)> =
            sqlx::query_as("SELECT id, name, price_fen, stock FROM products WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.reader)
                .await?;
        Ok(row.map(product_from_row))
    }
}
