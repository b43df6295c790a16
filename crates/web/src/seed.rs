//! The demo data of the original example: one board and five players.
//! It is written only when asked for (`leaderboard-web seed`), never on
//! start-up, and writing it twice changes nothing.

use domain::{BoardId, Name, PlayerId};
use store::{NewBoard, NewPlayer, Store, StoreError};

/// The id of the demo board.
pub const DEMO_BOARD: &str = "demo";
const DEMO_PLAYERS: [(&str, &str); 5] = [
    ("alice", "Alice"),
    ("bob", "Bob"),
    ("carol", "Carol"),
    ("dave", "Dave"),
    ("eve", "Eve"),
];

/// Creates the demo board and its players where missing. Returns how many
/// records it created.
pub async fn seed(store: &Store) -> Result<usize, StoreError> {
    store.ensure_schema().await?;
    let board = BoardId::parse(DEMO_BOARD).expect("demo id is valid");
    let mut created = 0;
    if !store.board_exists(&board).await? {
        match store
            .create_board(NewBoard {
                id: Some(board.clone()),
                name: Some(Name::parse("Demo board").expect("demo name is valid")),
                rules: domain::Rules::default(),
            })
            .await
        {
            Ok(_) => created += 1,
            Err(StoreError::Conflict) => {}
            Err(e) => return Err(e),
        }
    }
    for (id, name) in DEMO_PLAYERS {
        let id = PlayerId::parse(id).expect("demo id is valid");
        if store.player(&board, &id).await?.is_some() {
            continue;
        }
        let new = NewPlayer {
            id: Some(id),
            name: Name::parse(name).expect("demo name is valid"),
        };
        match store.create_player(&board, new).await {
            Ok(Some(_)) => created += 1,
            Ok(None) | Err(StoreError::Conflict) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(created)
}
