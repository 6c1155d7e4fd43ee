//! The shopper's cart: products and quantities, nothing else — prices, names and stock are
//! always the catalogue's, looked up when the cart is shown and again, with the stock
//! reserved, when it becomes an order. It travels in a cookie, as text ([`Cart::encode`]): a
//! cart the shopper edits by hand can only ask for products at their catalogue prices.

use std::fmt;

use super::MAX_NUM;
use crate::domain::Fen;
use crate::store::{NewItem, Product};

/// Most lines a cart holds.
pub const MAX_LINES: usize = 20;

/// Products and quantities, in the order they were added; each product once, each quantity
/// 1 to [`MAX_NUM`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cart {
    lines: Vec<NewItem>,
}

/// Why a cart change was refused; the cart is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CartError {
    /// The quantity would leave 1 to [`MAX_NUM`].
    Quantity,
    /// The cart already holds [`MAX_LINES`] products.
    Full,
}

impl Cart {
    /// The cart a cookie holds: `id:num` lines joined by `.`. Whatever does not read as a line
    /// (a stale or edited cookie) is dropped, as are repeats and lines past [`MAX_LINES`].
    pub fn decode(text: &str) -> Cart {
        let mut cart = Cart::default();
        for line in text.split('.') {
            let Some((id, num)) = line.split_once(':') else {
                continue;
            };
            let (Ok(product_id), Ok(num)) = (id.parse::<i64>(), num.parse::<i64>()) else {
                continue;
            };
            if product_id > 0
                && (1..=MAX_NUM).contains(&num)
                && cart.lines.len() < MAX_LINES
                && cart.num(product_id) == 0
            {
                cart.lines.push(NewItem { product_id, num });
            }
        }
        cart
    }

    /// The cart as cookie text (see [`Cart::decode`]).
    pub fn encode(&self) -> String {
        self.to_string()
    }

    pub fn lines(&self) -> &[NewItem] {
        &self.lines
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// How many of a product the cart holds.
    pub fn num(&self, product_id: i64) -> i64 {
        self.lines
            .iter()
            .find(|l| l.product_id == product_id)
            .map_or(0, |l| l.num)
    }

    /// Adds `num` of a product to what the cart holds of it.
    pub fn add(&mut self, product_id: i64, num: i64) -> Result<(), CartError> {
        if num < 1 {
            return Err(CartError::Quantity);
        }
        let total = self
            .num(product_id)
            .checked_add(num)
            .ok_or(CartError::Quantity)?;
        self.set(product_id, total)
    }

    /// Sets how many of a product the cart holds; 0 removes it.
    pub fn set(&mut self, product_id: i64, num: i64) -> Result<(), CartError> {
        if !(0..=MAX_NUM).contains(&num) {
            return Err(CartError::Quantity);
        }
        match self.lines.iter().position(|l| l.product_id == product_id) {
            Some(at) if num == 0 => {
                self.lines.remove(at);
            }
            Some(at) => self.lines[at].num = num,
            None if num == 0 => {}
            None if self.lines.len() >= MAX_LINES => return Err(CartError::Full),
            None => self.lines.push(NewItem { product_id, num }),
        }
        Ok(())
    }

    /// Keeps only the lines `keep` accepts.
    pub fn retain(&mut self, keep: impl Fn(&NewItem) -> bool) {
        self.lines.retain(keep);
    }
}

impl fmt::Display for Cart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, line) in self.lines.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            write!(f, "{}:{}", line.product_id, line.num)?;
        }
        Ok(())
    }
}

/// A cart priced from the catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PricedCart {
    pub lines: Vec<PricedLine>,
    pub total: Fen,
    /// Lines dropped because their product is no longer sold.
    pub dropped: usize,
    /// The cart without the dropped lines: what the cookie should now hold.
    pub cart: Cart,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PricedLine {
    pub product: Product,
    pub num: i64,
    pub line_total: Fen,
}

impl PricedLine {
    /// Whether the catalogue has fewer left than the line asks for.
    pub fn short(&self) -> bool {
        self.product.stock < self.num
    }
}

/// Prices `cart` with `products` (those on sale among its lines, as the store found them).
pub fn price(cart: &Cart, products: &[Product]) -> PricedCart {
    let mut kept = cart.clone();
    kept.retain(|l| products.iter().any(|p| p.id == l.product_id));
    let lines: Vec<PricedLine> = kept
        .lines()
        .iter()
        .filter_map(|l| {
            let product = products.iter().find(|p| p.id == l.product_id)?;
            Some(PricedLine {
                product: product.clone(),
                num: l.num,
                // At most 99 × ¥1,000,000 a line: no overflow.
                line_total: Fen(product.price.0.saturating_mul(l.num)),
            })
        })
        .collect();
    let total = Fen(lines.iter().map(|l| l.line_total.0).sum());
    PricedCart {
        dropped: cart.lines().len() - kept.lines().len(),
        lines,
        total,
        cart: kept,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cart_reads_back_what_it_wrote_and_drops_what_is_not_a_line() {
        let mut cart = Cart::default();
        cart.add(3, 2).unwrap();
        cart.add(1, 1).unwrap();
        cart.add(3, 1).unwrap();
        assert_eq!(cart.encode(), "3:3.1:1");
        assert_eq!(Cart::decode(&cart.encode()), cart);
        let edited = Cart::decode("3:3.x:1.1:0.2:100.-4:1.5:2.3:9.1:1;");
        assert_eq!(edited.encode(), "3:3.5:2");
        assert!(Cart::decode("").is_empty());
        let many = (1..=30)
            .map(|i| format!("{i}:1"))
            .collect::<Vec<_>>()
            .join(".");
        assert_eq!(Cart::decode(&many).lines().len(), MAX_LINES);
    }

    #[test]
    fn changes_stay_within_the_limits_or_change_nothing() {
        let mut cart = Cart::default();
        cart.add(1, MAX_NUM).unwrap();
        assert_eq!(cart.add(1, 1), Err(CartError::Quantity));
        assert_eq!(cart.add(2, 0), Err(CartError::Quantity));
        assert_eq!(cart.set(1, -1), Err(CartError::Quantity));
        assert_eq!(cart.num(1), MAX_NUM);
        cart.set(1, 0).unwrap();
        assert!(cart.is_empty());
        for id in 1..=MAX_LINES as i64 {
            cart.add(id, 1).unwrap();
        }
        assert_eq!(cart.add(99, 1), Err(CartError::Full));
        cart.add(1, 1).unwrap();
        assert_eq!(cart.num(1), 2, "a product already there is not a new line");
    }
}
