//! The catalogue and the direct buy; a buy short of stock comes back to the catalogue with the
//! quantity typed and what is left.

use super::cart::{checkout_form_url, BuyForm};
use super::{AppState, Chrome, WebError};
use crate::checkout::{CheckoutError, Contact, Missing, NewItem, MAX_NUM};
use actix_web::http::header::LOCATION;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;

struct ProductView {
    id: i64,
    name: String,
    description: String,
    price: String,
    stock: i64,
    max_num: i64,
    /// The quantity in the buy form: 1, or the one typed when it could not be had.
    num: i64,
    /// Why that quantity could not be had (Chinese, English).
    problem: Option<(String, String)>,
}

#[derive(Template)]
#[template(path = "shop.html")]
struct ShopPage {
    products: Vec<ProductView>,
    /// A buy was refused for want of stock (its product's card says how).
    short: bool,
    chrome: Chrome,
}

/// Stock at or below which a shopper who asked for more is told the count; above it, only that
/// there is not enough. (A compromise: the exact count helps a hoarder, but a shopper who wants
/// 3 of the last 2 should not have to guess.)
const TELL_STOCK_AT_MOST: i64 = 10;

/// What a shopper asking for more than `stock` is told (Chinese, English).
pub fn shortage(stock: i64) -> (String, String) {
    if stock <= 0 {
        ("已售罄".into(), "Sold out".into())
    } else if stock <= TELL_STOCK_AT_MOST {
        (format!("仅剩 {stock} 件"), format!("Only {stock} left"))
    } else {
        ("库存不足".into(), "Not enough stock".into())
    }
}

pub async fn catalogue(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, WebError> {
    catalogue_page(&state, &req, None)
        .await
        .and_then(|page| render(&page))
}

/// The catalogue again after `item` was refused for want of stock (409): the quantity typed kept
/// in its product's form, with what is left.
pub async fn short_of_stock(
    state: &AppState,
    req: &HttpRequest,
    item: NewItem,
) -> Result<HttpResponse, WebError> {
    let page = catalogue_page(state, req, Some(item)).await?;
    let mut response = render(&page)?;
    *response.status_mut() = actix_web::http::StatusCode::CONFLICT;
    Ok(response)
}

async fn catalogue_page(
    state: &AppState,
    req: &HttpRequest,
    short: Option<NewItem>,
) -> Result<ShopPage, WebError> {
    let products = state
        .checkout
        .catalogue()
        .await?
        .into_iter()
        .map(|p| {
            let refused = short.filter(|item| item.product_id == p.id);
            ProductView {
                id: p.id,
                max_num: p.stock.clamp(1, MAX_NUM),
                num: refused.map_or(1, |item| item.num),
                problem: refused.map(|_| shortage(p.stock)),
                name: p.name,
                description: p.description,
                price: p.price.to_string(),
                stock: p.stock,
            }
        })
        .collect();
    Ok(ShopPage {
        products,
        short: short.is_some(),
        chrome: state.chrome(req),
    })
}

/// A rendered page, 200.
pub fn render(page: &impl Template) -> Result<HttpResponse, WebError> {
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(page.render()?))
}

/// A product and quantity as a form gave them: a product that is not a number is not found;
/// a quantity that is not one is a quantity the checkout refuses.
pub fn item_of(sku_id: Option<&str>, num: Option<&str>) -> Result<NewItem, CheckoutError> {
    let number = |field: Option<&str>| field.and_then(|s| s.trim().parse::<i64>().ok());
    let product_id = number(sku_id).ok_or(CheckoutError::NotFound(Missing::Product))?;
    let num = number(num).unwrap_or(0);
    Ok(NewItem { product_id, num })
}

/// The direct buy: one product, straight to its pay page. A bare buy form, when the shop asks
/// for a contact, goes to the contact form first; a contact with problems gets that form back
/// with them.
pub async fn place_order(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: web::Form<BuyForm>,
) -> Result<HttpResponse, WebError> {
    if !state.same_origin(&req) {
        return Err(WebError::CrossOrigin);
    }
    let form = form.into_inner();
    let item = item_of(form.sku_id.as_deref(), form.num.as_deref())?;
    let fields = &state.checkout.terms().checkout_fields;
    let contact = if fields.is_empty() {
        Contact::default()
    } else if form.contact().is_absent(fields) {
        return Ok(see_other(checkout_form_url(&item)));
    } else {
        match state.checkout.check_contact(&form.contact()) {
            Ok(contact) => contact,
            Err(problems) => {
                return super::cart::form_again(&state, &req, Some(item), &form, problems).await
            }
        }
    };
    match place(&state, &req, vec![item], contact, false).await {
        Err(WebError::Checkout(CheckoutError::OutOfStock)) => {
            short_of_stock(&state, &req, item).await
        }
        placed => placed,
    }
}

/// Places the order and sends the shopper to its pay page, with the cookie that shows this
/// browser the receipt link once paid; `from_cart` empties the cart.
pub async fn place(
    state: &AppState,
    req: &HttpRequest,
    items: Vec<NewItem>,
    contact: Contact,
    from_cart: bool,
) -> Result<HttpResponse, WebError> {
    let order = state
        .checkout
        .place_order(items, contact, &state.shopper(req))
        .await?;
    let mut response = see_other(format!("/pay/{}", order.out_trade_no));
    if let Some(cookie) = state.receipt_cookie(&order) {
        response.add_cookie(&cookie).map_err(|_| WebError::Cookie)?;
    }
    if from_cart {
        response
            .add_cookie(&state.cart_cookie(&Default::default()))
            .map_err(|_| WebError::Cookie)?;
    }
    Ok(response)
}

/// A 303 to `to`.
pub fn see_other(to: String) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((LOCATION, to))
        .finish()
}
